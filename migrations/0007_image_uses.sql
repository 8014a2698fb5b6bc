-- When the daemon last used an image (a build from a runtime image, a container started from a
-- workspace image): the build cache evicts the least recently used first (`--cache-max-size`).
-- Unix seconds; an image never recorded counts from its creation time.
CREATE TABLE image_uses (
    image_id  TEXT PRIMARY KEY,
    used_at   INTEGER NOT NULL
);
