"""Recycle audits: did a reset hold? (the dormancy plug-in, core/watcher/dormancy_plugin.py, writes them)

After every recycle the plug-in writes one "recycle_audit" event at each of the next 5 flushes:
the fraction of the recycled units that the same definition flags again. `attach_audits` puts
them beside their recycle, as `audit` = [fraction at flush 1, 2, ...] on the recycle's event row.
"""
from __future__ import annotations

AUDIT_KIND = "recycle_audit"


def _key(layer, step, by) -> tuple:
    return (layer, int(step), by)


def attach_audits(events: list[dict]) -> list[dict]:
    """The events with each recycle carrying `audit` (a list, empty until the first audit flush) and
    `audit_by` (the definition audited). The audit rows themselves stay in the list."""
    found: dict[tuple, list[tuple[int, float]]] = {}
    for e in events:
        d = e.get("details") or {}
        if e.get("kind") == AUDIT_KIND and "of_step" in d:
            found.setdefault(_key(e.get("layer"), d["of_step"], d.get("by")), []).append(
                (int(d.get("flush", 0)), float(d.get("flagged_again", float("nan")))))
    out = []
    for e in events:
        if e.get("kind") == "recycle":
            d = e.get("details") or {}
            by = d.get("by") or ("dead" if d.get("mode") == "dead" else "redo")
            rows = sorted(found.get(_key(e.get("layer"), e["step"], by), []))
            e = {**e, "audit": [f for _, f in rows], "audit_by": by}
        out.append(e)
    return out
