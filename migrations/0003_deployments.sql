-- Flows, pods and peas: what runs in a workspace, as containers of its image on its network. One
-- table for the three kinds (they share the life cycle, the compare-and-set on (state, version)
-- and the scheduler; only `spec` differs by kind). A workspace row cannot go while one of its
-- deployments exists (RESTRICT): deleting a workspace first moves its deployments to DELETING,
-- their containers are stopped and the rows removed, then the workspace goes.
CREATE TABLE deployments (
    id            TEXT PRIMARY KEY CHECK (id GLOB 'jflow-*' OR id GLOB 'jpod-*' OR id GLOB 'jpea-*'),
    kind          TEXT NOT NULL CHECK (kind IN ('flow', 'pod', 'pea')),
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE RESTRICT,
    state         TEXT NOT NULL CHECK (state IN ('PENDING', 'ACTIVE', 'FAILED', 'DELETING')),
    version       INTEGER NOT NULL DEFAULT 0,
    error_code    TEXT,
    error_message TEXT,
    -- JSON object: what was asked for (flow: filename, envs; pod/pea: its arguments), with the
    -- limits and the restart policy
    spec          TEXT NOT NULL CHECK (json_valid(spec)),
    -- JSON array: the containers of the last start, one per pea/head/tail/gateway
    containers    TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(containers)),
    -- a flow's published gateway, `http://host:port`
    gateway_url   TEXT,
    -- JSON object: a pod's or pea's published ports
    ports         TEXT CHECK (ports IS NULL OR json_valid(ports)),
    -- how many starts were attempted
    starts        INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    CHECK ((state = 'FAILED') = (error_code IS NOT NULL)),
    CHECK (substr(id, 2, length(kind)) = kind)
);

CREATE INDEX deployments_by_state ON deployments (state, updated_at);
CREATE INDEX deployments_by_workspace ON deployments (workspace_id);
