-- CloudEvents over HTTP webhooks must be POSTed, and Slack's incoming webhooks take only
-- POST; such webhooks used to get the general GET default, which no receiver of theirs
-- accepts. Herald now refuses GET for them, so the ones left with it are moved to POST.
UPDATE webhooks SET request_method = 'POST'
WHERE format IN ('cloudevents', 'slack') AND request_method = 'GET';
