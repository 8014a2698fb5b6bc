-- The event timeline (`GET /events`): one row per state change of any workspace, flow, pod or pea,
-- written by triggers in the same transaction as the change itself, so no write path can forget
-- one and a crash can never keep a change without its event (or the reverse).
-- * from_state NULL: the row was created (in PENDING); to_state NULL: the row was removed.
-- * reason/message: the error code and message of a change to FAILED.
-- * workspace_id: the workspace the object belongs to (itself for a workspace), so one query
--   follows a whole run (the workspace and what runs in it).
-- `seq` is the cursor (`?since=`, SSE `id:`); AUTOINCREMENT, so a seq is never reused, even after
-- the newest rows were pruned by the retention.
CREATE TABLE events (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    object_id     TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('workspace', 'flow', 'pod', 'pea')),
    workspace_id  TEXT NOT NULL,
    from_state    TEXT CHECK (from_state IN ('PENDING', 'ACTIVE', 'FAILED', 'DELETING')),
    to_state      TEXT CHECK (to_state IN ('PENDING', 'ACTIVE', 'FAILED', 'DELETING')),
    reason        TEXT,
    message       TEXT,
    at            TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    CHECK (from_state IS NOT NULL OR to_state IS NOT NULL)
);

CREATE INDEX events_by_object ON events (object_id, seq);
CREATE INDEX events_by_workspace ON events (workspace_id, seq);
CREATE INDEX events_by_time ON events (at);

CREATE TRIGGER workspaces_created AFTER INSERT ON workspaces BEGIN
    INSERT INTO events (object_id, kind, workspace_id, from_state, to_state)
    VALUES (NEW.id, 'workspace', NEW.id, NULL, NEW.state);
END;
CREATE TRIGGER workspaces_changed AFTER UPDATE OF state ON workspaces WHEN OLD.state IS NOT NEW.state BEGIN
    INSERT INTO events (object_id, kind, workspace_id, from_state, to_state, reason, message)
    VALUES (NEW.id, 'workspace', NEW.id, OLD.state, NEW.state, NEW.error_code, NEW.error_message);
END;
CREATE TRIGGER workspaces_removed AFTER DELETE ON workspaces BEGIN
    INSERT INTO events (object_id, kind, workspace_id, from_state, to_state)
    VALUES (OLD.id, 'workspace', OLD.id, OLD.state, NULL);
END;

CREATE TRIGGER deployments_created AFTER INSERT ON deployments BEGIN
    INSERT INTO events (object_id, kind, workspace_id, from_state, to_state)
    VALUES (NEW.id, NEW.kind, NEW.workspace_id, NULL, NEW.state);
END;
CREATE TRIGGER deployments_changed AFTER UPDATE OF state ON deployments WHEN OLD.state IS NOT NEW.state BEGIN
    INSERT INTO events (object_id, kind, workspace_id, from_state, to_state, reason, message)
    VALUES (NEW.id, NEW.kind, NEW.workspace_id, OLD.state, NEW.state, NEW.error_code, NEW.error_message);
END;
CREATE TRIGGER deployments_removed AFTER DELETE ON deployments BEGIN
    INSERT INTO events (object_id, kind, workspace_id, from_state, to_state)
    VALUES (OLD.id, OLD.kind, OLD.workspace_id, OLD.state, NULL);
END;
