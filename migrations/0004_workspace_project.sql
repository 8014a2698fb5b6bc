-- The custom project container a `.jinad` `run` starts (JinaD's end-to-end project): JSON with its
-- container name, state and published ports; NULL when `.jinad` has no `run`.
ALTER TABLE workspaces ADD COLUMN project TEXT CHECK (project IS NULL OR json_valid(project));
