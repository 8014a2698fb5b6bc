-- Remote pods (a Flow on another machine uses this daemon):
-- * workspaces.digest: a digest of the workspace's files when its build started, so a Flow can
--   reuse a workspace whose content is unchanged instead of uploading it again;
-- * deployments.lease_seconds / lease_expires_at: a deployment created for a Flow elsewhere lives
--   only while that Flow renews its lease; an expired lease moves the row to DELETING.
ALTER TABLE workspaces ADD COLUMN digest TEXT;
ALTER TABLE deployments ADD COLUMN lease_seconds INTEGER CHECK (lease_seconds IS NULL OR lease_seconds > 0);
ALTER TABLE deployments ADD COLUMN lease_expires_at TEXT;
CREATE INDEX deployments_lease ON deployments (lease_expires_at) WHERE lease_expires_at IS NOT NULL;
