"""Demo data: the Baiyin City (白银市), Gansu scenario that every later issue grows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from market import demo_supply, demo_trading
from market.accounts import service as accounts_service
from market.organisations import service as organisations_service
from market.organisations.models import Organisation
from market.regions import service as regions_service

DEMO_PASSWORD = "nongshang-2026"
POVERTY_COUNTIES = ("620421", "620422", "620423")  # 靖远县, 会宁县, 景泰县


@dataclass(frozen=True)
class DemoOrganisation:
    key: str
    kind: str
    name_zh: str
    name_en: str
    region_code: str
    email: str
    person: str
    audit_regions: tuple[str, ...] = ()


ORGANISATIONS = (
    DemoOrganisation(
        "platform",
        "platform",
        "农商桥平台运营中心",
        "AgriBridge Platform Operations",
        "620400",
        "admin@agribridge.demo",
        "平台管理员",
    ),
    DemoOrganisation(
        "coop_wolfberry",
        "cooperative",
        "靖远县枸杞种植专业合作社",
        "Jingyuan Wolfberry Growers' Cooperative",
        "620421",
        "gouqi@jingyuan.demo",
        "张建国",
    ),
    DemoOrganisation(
        "coop_grains",
        "cooperative",
        "会宁县小杂粮产销专业合作社",
        "Huining Small Grains Cooperative",
        "620422",
        "zaliang@huining.demo",
        "李秀英",
    ),
    DemoOrganisation(
        "coop_flour",
        "cooperative",
        "景泰县和尚头面粉加工专业合作社",
        "Jingtai Monk's-Head Flour Cooperative",
        "620423",
        "mianfen@jingtai.demo",
        "王德福",
    ),
    DemoOrganisation(
        "coop_jujube",
        "cooperative",
        "靖远县小口大枣种植专业合作社",
        "Jingyuan Jujube Growers' Cooperative",
        "620421",
        "hongzao@jingyuan.demo",
        "刘玉兰",
    ),
    DemoOrganisation(
        "coop_melon_seed",
        "cooperative",
        "会宁县黑瓜子种植专业合作社",
        "Huining Black Melon Seed Cooperative",
        "620422",
        "guazi@huining.demo",
        "陈志强",
    ),
    DemoOrganisation(
        "buyer_beijing",
        "buyer",
        "北京新发地农产品批发有限公司",
        "Beijing Xinfadi Produce Wholesale",
        "110106",
        "caigou@xinfadi.demo",
        "赵磊",
    ),
    DemoOrganisation(
        "buyer_tianjin",
        "buyer",
        "天津何庄子农产品批发市场采购部",
        "Tianjin Hezhuangzi Wholesale Market",
        "120110",
        "caigou@hezhuangzi.demo",
        "孙丽",
    ),
    DemoOrganisation(
        "buyer_chengdu",
        "buyer",
        "成都蓉城连锁超市有限公司",
        "Chengdu Rongcheng Supermarkets",
        "510104",
        "caigou@rongcheng.demo",
        "周杰",
    ),
    DemoOrganisation(
        "buyer_chongqing",
        "buyer",
        "重庆市总工会职工服务中心",
        "Chongqing Federation of Trade Unions Service Centre",
        "500103",
        "caigou@cqgh.demo",
        "吴敏",
    ),
    DemoOrganisation(
        "buyer_xian",
        "buyer",
        "西安高校后勤联合采购中心",
        "Xi'an Universities Canteen Purchasing",
        "610113",
        "caigou@xagx.demo",
        "郑华",
    ),
    DemoOrganisation(
        "buyer_guangzhou",
        "buyer",
        "广州江南果菜批发市场经营管理有限公司",
        "Guangzhou Jiangnan Fruit and Vegetable Market",
        "440111",
        "caigou@jiangnan.demo",
        "黄伟",
    ),
    DemoOrganisation(
        "organiser",
        "organiser",
        "靖远县电子商务公共服务中心",
        "Jingyuan County E-commerce Public Service Centre",
        "620421",
        "dianshang@jingyuan.demo",
        "马晓燕",
    ),
    DemoOrganisation(
        "authority",
        "authority",
        "白银市农业农村局",
        "Baiyin Agriculture and Rural Affairs Bureau",
        "620400",
        "shenji@baiyin-nyj.demo",
        "何国庆",
        ("620400",),
    ),
)


@dataclass(frozen=True)
class DemoLogin:
    organisation: str
    kind: str
    email: str
    password: str


async def is_empty(session: AsyncSession) -> bool:
    return int(await session.scalar(select(func.count()).select_from(Organisation)) or 0) == 0


async def load(
    session: AsyncSession, *, key: bytes, advance: Callable[[str], None] = lambda _: None
) -> list[DemoLogin]:
    """Create the demo organisations (all verified), their owners, the poverty flags, the
    supply side (registry, members, products, lots, listings) and trading (orders in every
    state, bids with counter-offers, sealed bids on an auction closing in a few minutes)."""
    logins: list[DemoLogin] = []
    platform_user_id = None
    for demo in ORGANISATIONS:
        user = await accounts_service.register(
            session, email=demo.email, password=DEMO_PASSWORD, display_name=demo.person
        )
        organisation = await organisations_service.create_organisation(
            session,
            creator_id=user.id,
            data={
                "kind": demo.kind,
                "name_zh": demo.name_zh,
                "name_en": demo.name_en,
                "region_code": demo.region_code,
            },
        )
        if platform_user_id is None:
            platform_user_id = user.id
        await organisations_service.verify(
            session, organisation_id=organisation.id, operator_id=platform_user_id
        )
        if demo.audit_regions:
            await organisations_service.set_audit_regions(
                session,
                organisation_id=organisation.id,
                region_codes=list(demo.audit_regions),
                granted_by_id=platform_user_id,
            )
        logins.append(DemoLogin(demo.name_zh, demo.kind, demo.email, DEMO_PASSWORD))
        advance(demo.name_zh)
    for code in POVERTY_COUNTIES:
        await regions_service.set_poverty_flag(session, code=code, designated=True)
    advance("poverty counties")
    authority_id = await session.scalar(
        select(Organisation.id).where(Organisation.kind == "authority")
    )
    assert authority_id is not None
    await demo_supply.load(session, key=key, authority_id=authority_id, advance=advance)
    await demo_trading.load(session, advance=advance)
    return logins


def steps() -> int:
    return len(ORGANISATIONS) + 1 + demo_supply.steps() + demo_trading.steps()


def logins() -> list[DemoLogin]:
    return [DemoLogin(d.name_zh, d.kind, d.email, DEMO_PASSWORD) for d in ORGANISATIONS]
