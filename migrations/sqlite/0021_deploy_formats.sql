-- The deploy formats (flux, keel, github-dispatch, gitlab-trigger, dockerhub): the deploy
-- tool's secret (Flux's HMAC key, a GitHub token, a GitLab trigger token), sealed like the
-- password and never returned, and the options those formats read (JSON: event_type, ref,
-- variables, registry); NULL: none.
ALTER TABLE webhooks ADD COLUMN token BLOB;
ALTER TABLE webhooks ADD COLUMN format_options TEXT;
