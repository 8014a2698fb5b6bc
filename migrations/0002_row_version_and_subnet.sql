-- Every transition bumps `version`: a compare-and-set checks state AND version, so a worker acting
-- on a stale snapshot cannot overwrite a newer transition (a delete and re-create, a requeue).
ALTER TABLE workspaces ADD COLUMN version INTEGER NOT NULL DEFAULT 0;

-- The IPv4 subnet of the workspace's bridge network, allocated from the daemon's own pool
-- (--network-pool) rather than Docker's default pools (which hold ~30 networks). Freed with the row.
ALTER TABLE workspaces ADD COLUMN subnet TEXT;
CREATE UNIQUE INDEX workspaces_by_subnet ON workspaces (subnet) WHERE subnet IS NOT NULL;
