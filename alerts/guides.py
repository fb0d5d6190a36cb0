"""What on-call needs to know about each alert, beyond what its rule says: the runbooks'
hand-written part (``alerts.runbooks`` adds what the rules and the stack say).

One ``Guide`` per alert name; ``alerts.runbooks`` refuses to generate without one, so a
new alert cannot ship without its runbook. ``{api}`` is the scheduler's base URL,
``{audit}`` the audit export command, as the stack configures them.
"""

from __future__ import annotations

from dataclasses import dataclass

from scheduler.service.config import DEFAULT_WEBHOOK_RATE as _LIMIT


@dataclass(frozen=True)
class Guide:
    meaning: str  # what fired and what it means for the bank
    automatic: str  # what the scheduler did by itself, and how to see it
    not_helped: str  # what to do if that did not help
    escalate: str  # who to call, and when


_DECISIONS = (
    'See its decisions: `curl -H "Authorization: Bearer $TOKEN" {api}/api/v1/decisions?limit=20` '
    "(a viewer token) and the audit trail: `{audit} --operation decision.rebalance`."
)
_POOLS = (
    '`curl -H "Authorization: Bearer $TOKEN" {api}/api/v1/pools` shows what each pool holds now.'
)
_NOTHING = "The scheduler does not act on this alert by itself."
_GPU_ESCALATE = (
    "If more than one GPU of a node is affected, or the node's GPUs keep failing after a reset, "
    "open a hardware case with the server vendor and the machine-room team."
)

GUIDES: dict[str, Guide] = {
    "NovabrainModelLatencyHigh": Guide(
        meaning=(
            "Real-time risk scoring is slow: the model's tail latency is over its SLO threshold, "
            "so payment and trading checks wait on it (at market open this is the 09:30 queue "
            "the bank built this system for). The scheduler is already acting: this alert is "
            "the one its webhook receives."
        ),
        automatic=(
            "The scheduler borrows GPUs for the P0 pool, preempting P1/P2 work (checkpointed "
            "jobs lose only the work since their last checkpoint), a step at a time within the "
            "pool's borrowing limit, or scales the pool. " + _DECISIONS + " " + _POOLS
        ),
        not_helped=(
            "If the pool grew and latency is still high: check the model itself (errors, queue "
            "wait on the Model SLO dashboard, a bad release). If no GPUs moved: look for "
            "`NovabrainWebhookFailing`, and read the decision's reason (borrowing limit reached, "
            "nothing preemptible, dry-run). Move GPUs by hand with "
            '`curl -X POST -H "Authorization: Bearer $TOKEN" -d \'{{"gpus": 8}}\' '
            "{api}/api/v1/pools/<pool>/rebalance` (an operator token)."
        ),
        escalate=(
            "Page the risk platform lead at once if latency stays above the threshold 10 "
            "minutes after GPUs moved, or if no GPUs moved: the bank's risk checks are degraded."
        ),
    ),
    "NovabrainModelLatencyBudgetBurn": Guide(
        meaning=(
            "The model misses its latency SLO often enough to spend its 30-day error budget "
            "early. A fast burn (1h/5m, 6h/30m) pages: the budget goes in days; a slow burn "
            "(1d/2h, 3d/6h) is a ticket: weeks."
        ),
        automatic=(
            "The scheduler acts on the fast latency alert (`NovabrainModelLatencyHigh`), not "
            "on budget burn. " + _DECISIONS
        ),
        not_helped=(
            "Find when the misses started on the dashboard panel, and whether they follow load "
            "(add capacity: raise the pool's borrowing limit or nominal GPUs in the stack) or "
            "a release (roll it back)."
        ),
        escalate=(
            "A fast burn that lasts an hour: the model owner and the risk platform lead. A slow "
            "burn: a ticket to the model owner for this week."
        ),
    ),
    "NovabrainModelAvailabilityBudgetBurn": Guide(
        meaning=(
            "The model fails requests often enough to spend its 30-day availability budget "
            "early: callers get errors, and risk decisions fall back to their defaults."
        ),
        automatic=_NOTHING + " More GPUs do not fix failing requests.",
        not_helped=(
            "Look at the error reasons (`reason` label: rejected, timeout, backend) on the "
            "dashboard: rejected means overload, backend a bug or a bad release (roll it back), "
            "timeout a slow dependency."
        ),
        escalate="A fast burn: the model owner now. A slow burn: a ticket to the model owner.",
    ),
    "NovabrainModelErrorRateHigh": Guide(
        meaning="More than 5% of the model's requests fail: its callers see errors.",
        automatic=_NOTHING,
        not_helped=(
            "Check the error reasons on the dashboard and the model server's logs; roll back a "
            "recent release."
        ),
        escalate="The model owner if it lasts 30 minutes or the model is P0.",
    ),
    "NovabrainModelNoTraffic": Guide(
        meaning=(
            "The model gets far less traffic than it should: its callers may not reach it (DNS, "
            "a gateway, a client release) or the model server is down."
        ),
        automatic=_NOTHING,
        not_helped=(
            "Check `NovabrainTargetDown` for the model server, then the gateway and the callers."
        ),
        escalate="The model owner and the callers' team.",
    ),
    "NovabrainGpuXidError": Guide(
        meaning=(
            "The driver reported an XID error on a GPU: a hardware or driver fault (79: fallen "
            "off the bus; 48/63/64/92/94/95: memory errors; 13/31/43: usually the application)."
        ),
        automatic=(
            "The scheduler keeps scheduling on the GPU until it is drained; if it stops "
            "answering NVML, `NovabrainGpuDown` follows. " + _POOLS
        ),
        not_helped=(
            "Drain the node (cordon it), let jobs checkpoint, reset the GPU (`nvidia-smi -r -i "
            "<gpu>`) or reboot the node; check `dmesg` for the XID's details."
        ),
        escalate=_GPU_ESCALATE,
    ),
    "NovabrainGpuEccUncorrected": Guide(
        meaning=(
            "A GPU's memory had uncorrectable errors: the job on it may have computed with bad "
            "data, and the GPU needs a reset to retire the page."
        ),
        automatic=_NOTHING + " " + _POOLS,
        not_helped=(
            "Drain the GPU's node, reset the GPU, and check its remapped rows; a GPU out of "
            "remap rows is replaced. Tell the owner of the job that ran on it."
        ),
        escalate=_GPU_ESCALATE,
    ),
    "NovabrainGpuTemperatureHigh": Guide(
        meaning="A GPU runs hot and will slow itself down soon: its jobs get slower.",
        automatic=_NOTHING,
        not_helped="Check the node's fans and the rack's cooling; move work off the node.",
        escalate="The machine-room team if several GPUs of a rack are hot.",
    ),
    "NovabrainGpuThrottled": Guide(
        meaning=(
            "A GPU's clocks are held down for a reason that is not normal load (thermal, power "
            "brake, hardware slowdown): its jobs run slower than planned."
        ),
        automatic=_NOTHING,
        not_helped="See the reason label; fix cooling or power, or drain the node.",
        escalate="The machine-room team for power or cooling; the vendor for a hardware slowdown.",
    ),
    "NovabrainGpuDown": Guide(
        meaning=(
            "NVML cannot read a GPU (lost from the bus, driver hung): whatever ran on it has "
            "stopped, and in the P0 pool serving capacity is down by one GPU."
        ),
        automatic=(
            "The scheduler does not place new work on a GPU it cannot see; for P0 a latency "
            "breach that follows triggers a rebalance. " + _POOLS
        ),
        not_helped="Drain the node and reset the GPU or reboot; check `dmesg` for XID 79.",
        escalate=_GPU_ESCALATE,
    ),
    "NovabrainTargetDown": Guide(
        meaning=(
            "Prometheus cannot scrape one of our exporters: its metrics, and every alert built "
            "on them, are blind."
        ),
        automatic=_NOTHING,
        not_helped="Check the process (systemd or the pod) and the network path from Prometheus.",
        escalate="The platform on-call if it lasts 15 minutes: alerts depend on it.",
    ),
    "NovabrainGpuExporterStale": Guide(
        meaning=(
            "The GPU exporter answers scrapes but has stopped collecting: GPU metrics are "
            "stale, and GPU alerts are blind."
        ),
        automatic=_NOTHING,
        not_helped="Restart the exporter; if NVML hangs, the node's driver needs attention.",
        escalate="The platform on-call if it lasts 15 minutes.",
    ),
    "NovabrainPoolStarvation": Guide(
        meaning=(
            "A lower-priority pool's oldest job has waited past the point where its aging "
            "bonus is capped: training or batch work is starved, usually because P0 keeps "
            "its borrowed GPUs."
        ),
        automatic=(
            "Borrowed GPUs go back once the P0 alert has been resolved for the stabilization "
            "window; the scheduler may ask for nodes (scale-up). " + _POOLS
        ),
        not_helped=(
            "Check whether P0 is still borrowing (a latency alert that does not resolve) and "
            "whether the pool can scale; lower the P0 borrowing limit in the stack if P0 "
            "keeps too much."
        ),
        escalate="The pool's owning team during business hours.",
    ),
    "NovabrainScaleUpFailed": Guide(
        meaning="The scheduler asked for nodes for a pool and did not get them.",
        automatic=(
            "The scheduler retries after its stabilization window. See it: `{audit} "
            "--operation decision.scale_up`."
        ),
        not_helped="Check the Cluster Autoscaler's status and the node group's quota.",
        escalate="The Kubernetes platform team; for the P0 pool, at once.",
    ),
    "NovabrainReservationNotMet": Guide(
        meaning=(
            "A reservation window (e.g. the market bell) has started and its pool does not "
            "hold the reserved GPUs: P0 enters the busy period short of capacity."
        ),
        automatic=(
            "The scheduler drains borrowers before the window; a breach during it triggers a "
            "rebalance. " + _DECISIONS + " " + _POOLS
        ),
        not_helped=(
            "Rebalance by hand (`curl -X POST ... {api}/api/v1/pools/<pool>/rebalance`), or "
            "cancel the work that holds the GPUs."
        ),
        escalate="The risk platform lead at once: the market window is under way.",
    ),
    "NovabrainPreemptionStorm": Guide(
        meaning=(
            "More preemptions in one cycle window than the cluster has GPUs: jobs are being "
            "preempted over and over and lose work."
        ),
        automatic=(
            "The scheduler's guards (minimum runtime, preemption budget, cycle detection) "
            "should stop this. See: `{audit} --operation decision.preempt`."
        ),
        not_helped=(
            "Switch the scheduler to dry-run (`curl -X PATCH -d '{{\"dry_run\": true}}' "
            "{api}/api/v1/policy` with an admin token) and look for the cycle in the decisions."
        ),
        escalate="The platform on-call now; the scheduler's maintainers next business day.",
    ),
    "NovabrainAuditChainTampered": Guide(
        meaning=(
            "Someone with write access to the scheduler's database changed its audit log: a "
            "record edited, deleted, reordered or cut off. The evidence of who did what (manual "
            "rebalances, policy changes, denied attempts) can no longer be trusted from this "
            "copy. Treat it as a security incident."
        ),
        automatic=(
            "The scheduler found it (its background verifier) and logged where: 'audit log "
            "TAMPERED at record N'. It keeps running and keeps recording; it does not repair "
            "the log."
        ),
        not_helped=(
            "Preserve the evidence: copy STATE_DIR (audit.db, audit-archive.db) before anything "
            "else. Verify against the heads published off the box: `novabrain audit verify --db "
            "audit.db --archive audit-archive.db --expect-head SEQ:HASH` with the last 'audit "
            "head' line your log collector kept; compare the records around N with the forwarded "
            "copy (syslog or the shipped JSON Lines file), which the attacker could not reach. "
            "Rotate every token in the stack (`novabrain token new`)."
        ),
        escalate=(
            "The security team and the platform on-call now; the bank's incident process "
            "applies (audit evidence destroyed)."
        ),
    ),
    "NovabrainAuditForwardingBehind": Guide(
        meaning=(
            "The copy of the audit log kept off the box (audit.forward) is behind: records "
            "written on the scheduler have not reached the collector. Until it catches up, "
            "someone who can write the scheduler's disk could change them unseen."
        ),
        automatic=(
            "The scheduler retries with backoff (its forward-failures counter counts them) "
            "and resumes from its persisted cursor: nothing is lost while it waits."
        ),
        not_helped=(
            "Check the collector at audit.forward's address (is it up, does it accept TCP from "
            "the scheduler) or the shipped file's disk; the scheduler's log says why it failed "
            "('audit forwarding failed')."
        ),
        escalate=(
            "The platform on-call within the working day; the security team if it lasts a day."
        ),
    ),
    "NovabrainWebhookFailing": Guide(
        meaning=(
            "Alertmanager's notifications to the scheduler are refused or failing: P0 "
            "latency breaches will not move GPUs."
        ),
        automatic=_NOTHING + " It is the alarm that the automation is off.",
        not_helped=(
            "Check the result label: unauthorized means Alertmanager's token file does not "
            "match the stack's hash; invalid a changed payload; unavailable the "
            "scheduler's storage. `curl {api}/healthz`. Throttled notifications are not "
            "counted here: Alertmanager retries them (`NovabrainWebhookThrottled`)."
        ),
        escalate="The platform on-call now: until fixed, P0 breaches need a human to act.",
    ),
    "NovabrainWebhookThrottled": Guide(
        meaning=(
            "Alertmanager sends the scheduler more notifications than its webhook takes "
            f"({_LIMIT.rate:g} a second, bursts of {_LIMIT.burst:g}), and has done so without "
            "a pause: each one over "
            "the limit is answered 503 with Retry-After. Nothing is lost, Alertmanager retries "
            "until it gets through, but every notification waits for its retries, so the "
            "rebalance a P0 latency breach asks for comes late. A burst that clears within "
            "minutes (every group of a market open at once) does not fire this."
        ),
        automatic=(
            "The scheduler acts on each notification once it is taken in, exactly once "
            "however often it was retried; Alertmanager retries with backoff. "
            "The webhook panel shows results by kind: throttled against accepted."
        ),
        not_helped=(
            "Find why so much is sent: alert groups too fine (`group_by`) or a group interval "
            "too short in the generated alertmanager.yml, an alert flapping, or several "
            "Alertmanager replicas each sending (they should form a cluster and deduplicate). "
            "If P0 latency is high meanwhile and GPUs do not move, rebalance by hand "
            '(`curl -X POST -H "Authorization: Bearer $TOKEN" -d \'{{"gpus": 8}}\' '
            "{api}/api/v1/pools/<pool>/rebalance`, an operator token)."
        ),
        escalate=(
            "The platform on-call within the hour; at once if `NovabrainModelLatencyHigh` "
            "fires while this does."
        ),
    ),
}
