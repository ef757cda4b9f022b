"""The `market` command in-process (typer's runner) against the test database."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import create_async_engine
from typer.testing import CliRunner

from market.cli import app
from market.organisations.models import Membership, Organisation
from market.regions.models import Region

runner = CliRunner()


@pytest.fixture
def env(db_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("MARKET_DATABASE_URL", db_url)
    return {"MARKET_DATABASE_URL": db_url}


def _query(db_url: str, stmt):  # type: ignore[no-untyped-def]
    async def run():  # type: ignore[no-untyped-def]
        engine = create_async_engine(db_url)
        try:
            async with engine.connect() as conn:
                return (await conn.execute(stmt)).all()
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_create_admin_makes_a_verified_platform_owner(env, db_url, clean_db):
    args = ["create-admin", "--email", "ops@agribridge.cn", "--password", "a-long-password"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "created" in first.output
    rows = _query(
        db_url,
        select(Organisation.kind, Organisation.verification_status, Membership.role).join(
            Membership, Membership.organisation_id == Organisation.id
        ),
    )
    assert rows == [("platform", "verified", "owner")]
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "already existed" in again.output

    weak = runner.invoke(app, ["create-admin", "--email", "x@agribridge.cn", "--password", "short"])
    assert weak.exit_code == 1
    assert "password" in weak.output and "Traceback" not in weak.output

    # someone registered the address first (e-mails are not verified): not made an operator
    taken = ["create-admin", "--email", "ops@agribridge.cn", "--password", "not-the-password"]
    refused = runner.invoke(app, taken)
    assert refused.exit_code == 1 and "not its password" in refused.output


def test_import_poverty_counties_reports_bad_lines(env, db_url, clean_db, tmp_path):
    csv = tmp_path / "贫困县名单.csv"
    csv.write_bytes("code,designated\n620421,1\n620422,是\n99,1\n".encode("gb18030"))
    result = runner.invoke(app, ["regions", "import-poverty", str(csv)])
    assert result.exit_code == 2, result.output
    assert "3 rows: 2 changed" in result.output
    assert "line 4" in result.output
    flagged = _query(db_url, select(Region.code).where(Region.is_poverty_county))
    assert sorted(r[0] for r in flagged) == ["620421", "620422"]


def test_db_current_says_up_to_date(env):
    result = runner.invoke(app, ["db", "current"])
    assert result.exit_code == 0, result.output
    assert "up to date" in result.output


def test_help_texts():
    for args in ([], ["db"], ["config"], ["regions"], ["serve", "--help"], ["demo", "--help"]):
        result = runner.invoke(app, [*args, "--help"] if args[-1:] != ["--help"] else args)
        assert result.exit_code == 0, (args, result.output)
        assert "Usage" in result.output


def test_sourcing_verify_exit_codes(env, db_url, clean_db):
    import datetime as dt

    from market.db import create_engine, create_sessionmaker
    from tests.factories import member_with_token
    from tests.factories_sourcing import buy, make_household, make_lot, make_product

    async def seed() -> int:
        engine = create_engine(db_url, pool_size=1)
        try:
            async with create_sessionmaker(engine)() as session, session.begin():
                _, organisation, _ = await member_with_token(session)
                product = await make_product(session, organisation)
                lot = await make_lot(session, organisation, product)
                household = await make_household(session, organisation)
                seqs = [
                    await buy(
                        session, lot, household, quantity=q, price=4200, on=dt.date(2026, 8, 1)
                    )
                    for q in (1000, 2000, 3000)
                ]
                return seqs[1]
        finally:
            await engine.dispose()

    target = asyncio.run(seed())
    fine = runner.invoke(app, ["sourcing", "verify"])
    assert fine.exit_code == 0, fine.output
    assert "ledger verifies: 3 records" in fine.output

    async def tamper() -> None:
        engine = create_async_engine(db_url)
        try:
            async with engine.begin() as conn:
                await conn.execute(text("SET LOCAL session_replication_role = replica"))
                await conn.execute(
                    text("UPDATE sourcing_record SET amount_fen = 1 WHERE seq = :s"), {"s": target}
                )
        finally:
            await engine.dispose()

    asyncio.run(tamper())
    broken = runner.invoke(app, ["sourcing", "verify"])
    assert broken.exit_code == 3, broken.output
    assert f"record {target}" in broken.output


def _seed_listings(db_url: str, count: int) -> list[str]:
    from market.db import create_engine, create_sessionmaker
    from tests.factories_listings import make_listing, make_supply

    async def seed() -> list[str]:
        engine = create_engine(db_url, pool_size=1)
        try:
            async with create_sessionmaker(engine)() as session, session.begin():
                supply = await make_supply(session)
                return [
                    str((await make_listing(session, supply, quantity=5)).id) for _ in range(count)
                ]
        finally:
            await engine.dispose()

    return asyncio.run(seed())


def test_search_check_and_reindex(env, db_url, clean_db):
    ids = _seed_listings(db_url, 3)  # committed by a job: waiting in the outbox
    behind = runner.invoke(app, ["search", "check"])
    assert behind.exit_code == 3, behind.output
    assert "changes waiting (outbox)" in behind.output
    assert "not in step" in behind.output

    rebuilt = runner.invoke(app, ["search", "reindex", "--batch", "10"])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert "reindexed 3 listings" in rebuilt.output
    assert _query(db_url, text("SELECT count(*) FROM search_listing"))[0][0] == 3
    _query(db_url, text("DELETE FROM search_outbox RETURNING id"))  # sent by the reindex

    fine = runner.invoke(app, ["search", "check"])
    assert fine.exit_code == 0, fine.output
    assert "in step" in fine.output
    parked = runner.invoke(app, ["search", "parked"])
    assert parked.exit_code == 0 and "0 parked" in parked.output
    assert len(ids) == 3


def test_payments_import_statement_reconcile_and_ledger(env, db_url, clean_db, tmp_path):
    from market.db import create_engine, create_sessionmaker
    from market.money import service as money_service
    from market.orders import service as orders_service
    from payments.offline import BankAccount, OfflineBankTransfer
    from tests.factories import member_with_token
    from tests.factories_listings import make_listing, make_supply
    from tests.test_orders import ADDRESS

    async def seed() -> tuple[str, int]:
        engine = create_engine(db_url, pool_size=1)
        try:
            async with create_sessionmaker(engine)() as session, session.begin():
                supply = await make_supply(session)
                listing = await make_listing(session, supply)
                _, buyer, _ = await member_with_token(session, kind="buyer", region_code="110105")
                order = await orders_service.place_order(
                    session,
                    buyer=buyer,
                    user_id=None,
                    data={"lines": [{"listing_id": listing.id, "quantity": 10}], **ADDRESS},
                    terms=orders_service.Terms(300, 30, 2),
                )
                payment = await money_service.start_payment(
                    session,
                    providers={"offline": OfflineBankTransfer(BankAccount("a", "1", "b"))},
                    order_id=order.id,
                    buyer_id=buyer.id,
                    method="bank_transfer",
                )
                assert payment.reference_code is not None
                return payment.reference_code, order.total_fen
        finally:
            await engine.dispose()

    code, total = asyncio.run(seed())
    statement = tmp_path / "对账单.csv"
    statement.write_text(
        "交易日期,金额,附言,付款人,付款账号,流水号\n"
        f"2026-11-30,{total // 100}.{total % 100:02d},货款{code},北京新发地商贸,6222,CLI1\n"
        "2026-11-30,88.00,无附言,某人,6223,CLI2\n",
        encoding="gbk",
    )
    wrong = runner.invoke(app, ["payments", "import-statement", str(statement)])
    assert wrong.exit_code == 1, wrong.output
    assert "--encoding gbk" in wrong.output
    imported = runner.invoke(
        app, ["payments", "import-statement", str(statement), "--encoding", "gbk"]
    )
    assert imported.exit_code == 0, imported.output
    assert "2 lines, 2 new: 1 matched, 0 underpaid, 0 overpaid, 1 unmatched" in imported.output
    again = runner.invoke(
        app, ["payments", "import-statement", str(statement), "--encoding", "gbk"]
    )
    assert again.exit_code == 0 and "2 lines, 0 new" in again.output
    bad = tmp_path / "bad.csv"
    bad.write_text("交易日期,金额,附言,流水号\n2026-11-30,1.234,x,B1\n", encoding="utf-8")
    refused = runner.invoke(app, ["payments", "import-statement", str(bad)])
    assert refused.exit_code == 2, refused.output
    assert "line 2" in refused.output
    assert _query(db_url, text('SELECT status FROM "order"'))[0][0] == "paid"
    reconciled = runner.invoke(app, ["payments", "reconcile"])
    assert reconciled.exit_code == 0, reconciled.output
    assert "settled: 0" in reconciled.output
    books = runner.invoke(app, ["payments", "ledger"])
    assert books.exit_code == 0, books.output
    assert "买家托管资金" in books.output
    assert f"-{total // 100:,}.{total % 100:02d}" in books.output
    assert books.output.strip().splitlines()[-1].endswith("0.00")
