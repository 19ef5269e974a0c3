//! The delivery controls' SQL that both backends' claim queries share: which due
//! deliveries a webhook's circuit and ordering let through.

/// The claims' condition on a due delivery (the `deliveries` table, unaliased), `now` being
/// the placeholder of the claim's time: its webhook's circuit is closed or due for a probe
/// (`circuit_open_until` not in the future), and for a fifo webhook no earlier delivery
/// of it is unfinished (found in the partial index of fifo deliveries). Webhooks with neither, normally all, are passed at the first test,
/// a look at an index that holds none of them, so a claim without delivery controls costs
/// what it did.
pub(crate) fn claim_gate(now: &str) -> String {
    format!(
        "(webhook_id NOT IN (SELECT id FROM webhooks \
            WHERE circuit_open_until IS NOT NULL OR ordering = 'fifo') \
          OR EXISTS (SELECT 1 FROM webhooks w WHERE w.id = deliveries.webhook_id \
            AND (w.circuit_open_until IS NULL OR w.circuit_open_until <= {now}) \
            AND (w.ordering <> 'fifo' OR NOT EXISTS (SELECT 1 FROM deliveries e \
              WHERE e.webhook_id = deliveries.webhook_id AND e.fifo \
                AND e.id < deliveries.id AND e.state IN ('pending', 'retrying')))))"
    )
}

/// Makes a claimed delivery its webhook's probe: the circuit turns half-open until the
/// claim ends (`$1`), naming the delivery (`$2`) of webhook `$3`, provided the cool-down
/// is over at `$4` and no other claim took the probe first. One row changed: it is the
/// probe; none: it must be given back.
pub(crate) const TAKE_PROBE: &str = "UPDATE webhooks SET circuit_state = 'half-open', \
     circuit_open_until = $1, circuit_probe = $2 \
     WHERE id = $3 AND circuit_open_until IS NOT NULL AND circuit_open_until <= $4";

/// A half-open circuit whose probe is no longer claimed (given back by a process that
/// stopped, or by the others for one that died) may send a probe again at once, instead
/// of when that claim would have ended. `$1`: now.
pub(crate) const FREE_ORPHANED_PROBES: &str = "UPDATE webhooks SET circuit_open_until = $1 \
     WHERE circuit_state = 'half-open' AND circuit_open_until > $1 \
       AND EXISTS (SELECT 1 FROM deliveries d \
         WHERE d.id = webhooks.circuit_probe AND d.locked_until IS NULL)";

/// What ingest reads of each enabled webhook (`webhooks w`) an event may go to: its id,
/// whether it is fifo, whether it is plain (no rate limit, no failure counted, circuit
/// closed: its deliveries may be born claimed, and their sends assume that health), its
/// settings' revision, its filters and its format. One rule for both databases.
pub(crate) const CANDIDATE_COLUMNS: &str = "w.id, w.ordering = 'fifo', \
     w.rate_limit_milli IS NULL AND w.failing_since IS NULL AND w.circuit_state = 'closed' \
       AND w.circuit_failures = 0 AND w.circuit_open_until IS NULL AND w.circuit_probe IS NULL, \
     w.revision, w.filters, w.format";
