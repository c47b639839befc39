"""The audit trail: verify every signed event against pinned keys; print this daemon's key."""

from __future__ import annotations

import anyio

from ruvectord.cli import exits
from ruvectord.cli.framework import Context, command, group
from ruvectord.cli.output import Block, Column, Output, Table, progress
from ruvectord.errors import UserError

group("audit", "the signed audit trail: verify, key")


@command(
    "audit verify",
    "verify the signature and chain of every integrity event against pinned keys",
    connect=True,
)
async def verify(ctx: Context) -> Output:
    from ruvectord.audit import pinned_keys
    from ruvectord.postgres.audit_trail import verify_events

    config = ctx.config
    path = config.signing_key_path
    trusted = await anyio.to_thread.run_sync(
        pinned_keys, path, config.integrity.trusted_public_keys
    )
    if not trusted:
        raise UserError(
            f"no pinned key to verify against: {path} is missing and "
            "integrity.trusted_public_keys is empty (audit verify never trusts keys found in "
            "the database itself)"
        )
    async with progress("verifying the audit trail"):
        report = await verify_events(ctx.db, trusted)
    failures = [
        {
            "event": f.id,
            "collection": f.collection,
            "event_type": f.event_type,
            "created_at": f.created_at,
            "problem": f.problem,
        }
        for f in report.failures
    ]
    table = Table(
        [
            Column.number("EVENT", "event"),
            Column.key("COLLECTION", "collection"),
            Column.key("TYPE", "event_type"),
            Column.key("CREATED", "created_at"),
            Column.key("PROBLEM", "problem"),
        ],
        failures,
    )
    summary = (
        f"{report.checked} event(s) checked against {len(trusted)} pinned key(s), "
        f"{len(failures)} failed"
    )
    if report.pruned_through is not None:
        summary += f"; the chain starts after event {report.pruned_through} (pruned by retention)"
    data = {
        "ok": not failures,
        "checked": report.checked,
        "unchained": report.unchained,
        "pruned_through": report.pruned_through,
        "pinned_keys": len(trusted),
        "failures": failures,
    }
    view: list[Block] = [table, summary] if failures else [summary]
    return Output(data, view, exits.FAILURE if failures else exits.OK)


@command("audit key", "print this daemon's public key (to pin on other nodes)")
def key(ctx: Context) -> Output:
    from ruvectord.audit import pinned_keys

    path = ctx.config.signing_key_path
    keys = pinned_keys(path, ())
    if not keys:
        raise UserError(f"no signing key at {path} (integrity.signing_key_file)")
    rows = [
        {"signer": signer_id, "public_key": public.hex(), "path": str(path)}
        for signer_id, public in keys.items()
    ]
    lines = [f"{r['public_key']}  (signer {r['signer']}, {path})" for r in rows]
    return Output({"keys": rows}, list(lines))
