-- Workspaces: one row per uploaded project. The row is the work queue: the build worker picks up
-- PENDING rows, the delete worker DELETING rows. Times are ISO-8601 UTC text; JSON columns are text.
CREATE TABLE workspaces (
    id            TEXT PRIMARY KEY CHECK (id GLOB 'jworkspace-*'),
    state         TEXT NOT NULL CHECK (state IN ('PENDING', 'ACTIVE', 'FAILED', 'DELETING')),
    -- set exactly when state = 'FAILED': a stable snake_case code and a human message
    error_code    TEXT,
    error_message TEXT,
    -- JSON array of the workspace's files, relative paths, sorted
    files         TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(files)),
    -- JSON object: the parsed .jinad settings of the last build (NULL before the first build)
    settings      TEXT CHECK (settings IS NULL OR json_valid(settings)),
    -- Docker objects of the last successful build
    image_id      TEXT,
    image_tag     TEXT,
    network_id    TEXT,
    -- how many builds have been started for this row (a rebuild after an update increments it)
    builds        INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    CHECK ((state = 'FAILED') = (error_code IS NOT NULL))
);

CREATE INDEX workspaces_by_state ON workspaces (state, updated_at);
