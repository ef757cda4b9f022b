"""Listing documents for the search benchmark: realistic Chinese titles, real counties.

    python -m bench.search_data --listings 20 [--seed 20261130]   # print a few, as JSON lines

`documents(spec)` yields `search.base.ListingDocument`s one at a time, deterministic by seed,
without keeping them: memory stays flat however many are asked for.

* Products: regional brands of real counties (靖远枸杞 from 620421 靖远县, 宁夏中宁枸杞 from
  640521 中宁县, 会宁黑瓜子, 景泰和尚头面粉, 盐池滩羊肉, 临泽小枣, 蒲江猕猴桃, 郫县豆瓣, 密云蜂蜜,
  昌平苹果 and some fifty more) and unbranded staples (土豆, 小米, 胡麻油, 土鸡蛋, 红枣, …) from
  counties drawn from the whole gazetteer, with a strong lean to Gansu and Ningxia and to the
  brand counties. Brands, staples, counties, grades, varieties and packagings are each drawn
  with Zipf-like weights (the k-th most frequent about 1/k as often as the first), so a few
  words are in a large share of the titles (枸杞, 苹果, 特级, 500g, 礼盒装) and many are rare.
* Titles: "{brand or county + product} {grade}{variety} {size}{packaging}" with parts left
  out at random: 靖远枸杞 特级头茬 500g 礼盒装, 庄浪马铃薯 一级 5kg 袋装, 宁夏中宁枸杞 免洗 2斤; an
  English title for about a third of them.
* Places: county code, county, city and province names and the county's coordinates from the
  gazetteer the project ships (`market.regions.gazetteer.read_gazetteer`, the same file the
  migrations load into `region`); a fixed list of counties is flagged as poverty counties.
* Cooperatives: a handful per county, named like 靖远县东湾镇枸杞种植农民专业合作社, with ids
  derived from the seed, county and number.
* The rest: the product's category (the migrated `product_category` codes) and storage class,
  certification kinds as market's catalogue spells them (gi = geographical indication,
  green_food, organic, pollution_free; more often gi for brands), sale mode fixed (85%),
  negotiable or auction, the price in fen for the unit of sale from a per-kilogram range, the
  grade and the size, a log-normal quantity, a poor-household share in basis points (none for
  about a third; higher in poverty counties) and a publication time within the year before
  the anchor date.
"""

from __future__ import annotations

import argparse
import bisect
import datetime as dt
import itertools
import json
import random
import sys
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

from search.base import GeoPoint, ListingDocument
from search.postgres import document_to_json

CERTIFICATIONS = ("gi", "green_food", "organic", "pollution_free")
STORAGE_CLASSES = ("ambient", "chilled", "frozen")
SALE_MODES = ("fixed", "negotiable", "auction")
CATEGORIES = (
    "fresh_fruit",
    "dried_fruit_nuts",
    "grains",
    "flour_noodles",
    "meat",
    "vegetables",
    "tea",
    "edible_oil",
    "eggs_poultry",
    "honey_specialties",
)
ANCHOR = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
COOPERATIVES_PER_COUNTY = 6
_NAMESPACE = uuid.UUID("5b0f6c1e-2a4d-4f7e-9c11-0a9e5c3d2b17")

# sizes of the unit of sale: (label, grams), by family; the first ones are the most frequent
SIZES: dict[str, tuple[tuple[str, int], ...]] = {
    "dry": (("500g", 500), ("250g", 250), ("1kg", 1000), ("2斤", 1000), ("2.5kg", 2500),
            ("5斤", 2500), ("5kg", 5000), ("100g", 100), ("10斤", 5000), ("1000克", 1000)),
    "fruit": (("5斤", 2500), ("5kg", 5000), ("10斤", 5000), ("2.5kg", 2500), ("10kg", 10000),
              ("3斤", 1500), ("20斤", 10000), ("9斤", 4500)),
    "meat": (("1kg", 1000), ("2.5kg", 2500), ("5斤", 2500), ("500g", 500), ("5kg", 5000),
             ("10斤", 5000), ("整只", 15000)),
    "grain": (("5kg", 5000), ("2.5kg", 2500), ("10kg", 10000), ("10斤", 5000), ("25kg", 25000),
              ("1kg", 1000), ("50斤", 25000)),
    "tea": (("250g", 250), ("100g", 100), ("500g", 500), ("50g", 50), ("125g", 125)),
    "liquid": (("500g", 500), ("1kg", 1000), ("250g", 250), ("2斤", 1000), ("1.8L", 1650),
               ("5L", 4600)),
    "eggs": (("30枚", 1500), ("60枚", 3000), ("20枚", 1000), ("90枚", 4500)),
}  # fmt: skip
GRADES = ("特级", "一级", "精选", "二级", "特优", "优选", "A级", "统货", "三级", "超特级")
PACKAGINGS = ("礼盒装", "袋装", "散装", "箱装", "礼盒", "罐装", "真空包装", "家庭装", "盒装",
              "铁盒装", "编织袋", "竹篮装")  # fmt: skip
GENERAL_VARIETIES = ("新货", "产地直发", "农家", "正宗", "当季", "原生态", "高原", "包邮",
                     "手工", "现货", "老品种", "特产", "批发", "自产自销", "无添加")  # fmt: skip
TOWNS = ("东湾", "北湾", "平堡", "乌兰", "三滩", "红岘", "郭城", "中泉", "刘川", "五合", "城关",
         "新城", "河口", "红山", "石门", "柳树", "杨庄", "王家", "李家", "张家", "大坝", "双龙",
         "高崖", "甘沟", "白草塬", "草窝滩", "喜泉", "寺滩", "芦阳", "上沙沃", "正路", "红水",
         "大安", "金龙", "太平", "兴隆", "长城", "永和", "丰乐", "青江驿")  # fmt: skip
COOPERATIVE_KINDS = ("种植", "产销", "果品", "特色", "购销")

# counties flagged as poverty counties in the documents (Baiyin's three, as bench/generate.py
# treats them, and a few dozen counties of Gansu, Ningxia, Sichuan and Hebei that were on the
# national list); the rest are not
POVERTY_COUNTIES = frozenset(
    ("620421", "620422", "620423", "640323", "640324", "640422", "640423", "640424", "640425",
     "640522", "640303", "621126", "621123", "621122", "620825", "620826", "620522", "621022",
     "621024", "621026", "620621", "513423", "513425", "511823", "130826", "130129")
)  # fmt: skip


@dataclass(frozen=True)
class Product:
    """A product line: a regional brand of one county (`county` set) or an unbranded staple
    sold from many counties (`county` None)."""

    name: str  # product name, also in titles
    category: str
    storage: str
    sizes: str  # key of SIZES
    price_per_kg: tuple[int, int]  # fen
    varieties: tuple[str, ...] = ()
    brand: str | None = None  # the regional brand as written in titles
    county: str | None = None
    name_en: str | None = None
    gi: float = 0.0  # share of listings that claim a geographical indication


def _brand(
    brand: str,
    county: str,
    name: str,
    name_en: str,
    category: str,
    storage: str,
    sizes: str,
    price: tuple[int, int],
    varieties: tuple[str, ...] = (),
    gi: float = 0.6,
) -> Product:
    return Product(name, category, storage, sizes, price, varieties, brand, county, name_en, gi)


# regional brands, most frequent first (Zipf over this order)
BRANDS: tuple[Product, ...] = (
    _brand("靖远枸杞", "620421", "枸杞", "Jingyuan goji", "dried_fruit_nuts", "ambient", "dry",
           (4_000, 16_000), ("头茬", "免洗", "大果", "头茬免洗", "红枸杞")),
    _brand("宁夏中宁枸杞", "640521", "枸杞", "Ningxia Zhongning goji", "dried_fruit_nuts",
           "ambient", "dry", (5_000, 20_000), ("头茬", "免洗", "特优大果", "原浆")),
    _brand("会宁黑瓜子", "620422", "黑瓜子", "Huining black melon seeds", "dried_fruit_nuts",
           "ambient", "dry", (3_000, 8_000), ("原味", "五香", "大片", "籽粒饱满")),
    _brand("洛川苹果", "610629", "苹果", "Luochuan apples", "fresh_fruit", "chilled", "fruit",
           (600, 1_600), ("红富士", "脆甜", "冰糖心", "80果")),
    _brand("五常大米", "230184", "大米", "Wuchang rice", "grains", "ambient", "grain",
           (800, 3_000), ("稻花香", "新米", "长粒香")),
    _brand("景泰和尚头面粉", "620423", "面粉", "Jingtai Heshangtou flour", "flour_noodles",
           "ambient", "grain", (600, 1_600), ("和尚头", "石磨", "全麦", "旱地小麦")),
    _brand("盐池滩羊肉", "640323", "滩羊肉", "Yanchi Tan lamb", "meat", "frozen", "meat",
           (9_000, 16_000), ("羊排", "羊腿", "手抓", "羔羊", "冷鲜")),
    _brand("静宁苹果", "620826", "苹果", "Jingning apples", "fresh_fruit", "chilled", "fruit",
           (500, 1_400), ("红富士", "脆甜", "高原")),
    _brand("库尔勒香梨", "652801", "香梨", "Korla fragrant pears", "fresh_fruit", "chilled",
           "fruit", (700, 1_800), ("薄皮", "脆甜")),
    _brand("蒲江猕猴桃", "510131", "猕猴桃", "Pujiang kiwifruit", "fresh_fruit", "chilled",
           "fruit", (1_000, 3_000), ("红心", "金果", "徐香", "软糯")),
    _brand("临泽小枣", "620723", "小枣", "Linze dates", "dried_fruit_nuts", "ambient", "dry",
           (1_600, 4_000), ("免洗", "若羌", "肉厚核小")),
    _brand("沾化冬枣", "371603", "冬枣", "Zhanhua winter dates", "fresh_fruit", "chilled",
           "fruit", (1_200, 3_600), ("脆甜", "现摘")),
    _brand("郫县豆瓣", "510124", "豆瓣酱", "Pixian broad-bean paste", "honey_specialties",
           "ambient", "liquid", (1_600, 4_000), ("红油", "三年陈酿", "特级")),
    _brand("密云蜂蜜", "110118", "蜂蜜", "Miyun honey", "honey_specialties", "ambient",
           "liquid", (6_000, 16_000), ("荆条蜜", "槐花蜜", "百花蜜", "土蜂蜜")),
    _brand("昌平苹果", "110114", "苹果", "Changping apples", "fresh_fruit", "chilled", "fruit",
           (800, 2_000), ("红富士", "国光", "采摘")),
    _brand("安溪铁观音", "350524", "铁观音", "Anxi Tieguanyin", "tea", "ambient", "tea",
           (20_000, 120_000), ("清香型", "浓香型", "秋茶")),
    _brand("西湖龙井", "330106", "龙井", "West Lake Longjing", "tea", "ambient", "tea",
           (40_000, 300_000), ("明前", "雨前", "狮峰")),
    _brand("平谷大桃", "110117", "大桃", "Pinggu peaches", "fresh_fruit", "chilled", "fruit",
           (800, 2_400), ("水蜜桃", "油桃", "蟠桃")),
    _brand("岷县当归", "621126", "当归", "Minxian angelica", "honey_specialties", "ambient",
           "dry", (6_000, 20_000), ("当归片", "全归", "头茬")),
    _brand("庄浪马铃薯", "620825", "马铃薯", "Zhuanglang potatoes", "vegetables", "ambient",
           "grain", (150, 500), ("黄心", "沙瓤", "新土豆")),
    _brand("栖霞苹果", "370686", "苹果", "Qixia apples", "fresh_fruit", "chilled", "fruit",
           (700, 1_800), ("红富士", "烟富")),
    _brand("阿克苏苹果", "652901", "苹果", "Aksu apples", "fresh_fruit", "chilled", "fruit",
           (800, 2_200), ("冰糖心", "糖心")),
    _brand("乐陵金丝小枣", "371481", "金丝小枣", "Laoling golden-thread dates",
           "dried_fruit_nuts", "ambient", "dry", (1_600, 4_000), ("免洗", "无核")),
    _brand("渭源党参", "621123", "党参", "Weiyuan codonopsis", "honey_specialties", "ambient",
           "dry", (8_000, 24_000), ("白条党", "纹党", "切片")),
    _brand("陇西黄芪", "621122", "黄芪", "Longxi astragalus", "honey_specialties", "ambient",
           "dry", (6_000, 18_000), ("切片", "原枝")),
    _brand("民勤蜜瓜", "620621", "蜜瓜", "Minqin melons", "fresh_fruit", "chilled", "fruit",
           (400, 1_200), ("沙漠", "网纹", "黄河蜜")),
    _brand("环县羊羔肉", "621022", "羊羔肉", "Huanxian lamb", "meat", "frozen", "meat",
           (8_000, 14_000), ("羊排", "羊腿", "整只")),
    _brand("涪陵榨菜", "500102", "榨菜", "Fuling zhacai", "vegetables", "ambient", "dry",
           (1_000, 3_000), ("脆口", "微辣", "丝")),
    _brand("眉县猕猴桃", "610326", "猕猴桃", "Meixian kiwifruit", "fresh_fruit", "chilled",
           "fruit", (800, 2_400), ("徐香", "翠香", "红心")),
    _brand("周至猕猴桃", "610124", "猕猴桃", "Zhouzhi kiwifruit", "fresh_fruit", "chilled",
           "fruit", (800, 2_400), ("海沃德", "翠香")),
    _brand("秦安花椒", "620522", "花椒", "Qin'an Sichuan pepper", "honey_specialties",
           "ambient", "dry", (8_000, 20_000), ("大红袍", "麻味足", "无籽")),
    _brand("汉源花椒", "511823", "花椒", "Hanyuan Sichuan pepper", "honey_specialties",
           "ambient", "dry", (10_000, 30_000), ("贡椒", "清溪", "大红袍")),
    _brand("西吉马铃薯", "640422", "马铃薯", "Xiji potatoes", "vegetables", "ambient", "grain",
           (150, 500), ("黄心", "青薯")),
    _brand("泾源黄牛肉", "640424", "黄牛肉", "Jingyuan (Ningxia) beef", "meat", "frozen",
           "meat", (8_000, 15_000), ("牛腩", "牛腱", "冷鲜")),
    _brand("灵宝苹果", "411282", "苹果", "Lingbao apples", "fresh_fruit", "chilled", "fruit",
           (600, 1_600), ("红富士", "高山")),
    _brand("新郑红枣", "410184", "红枣", "Xinzheng jujubes", "dried_fruit_nuts", "ambient",
           "dry", (1_200, 3_600), ("鸡心枣", "灰枣")),
    _brand("迁西板栗", "130227", "板栗", "Qianxi chestnuts", "dried_fruit_nuts", "ambient",
           "dry", (1_600, 4_000), ("甘栗仁", "油栗")),
    _brand("赞皇大枣", "130129", "大枣", "Zanhuang jujubes", "dried_fruit_nuts", "ambient",
           "dry", (1_200, 3_600), ("金丝", "骏枣")),
    _brand("同心圆枣", "640324", "圆枣", "Tongxin round jujubes", "dried_fruit_nuts",
           "ambient", "dry", (1_600, 4_000), ("免洗",)),
    _brand("宁县黄花菜", "621026", "黄花菜", "Ningxian daylily", "vegetables", "ambient",
           "dry", (4_000, 10_000), ("干货", "无硫")),
    _brand("寻乌蜜桔", "360734", "蜜桔", "Xunwu tangerines", "fresh_fruit", "chilled", "fruit",
           (400, 1_200), ("薄皮", "脐橙")),
    _brand("婺源绿茶", "361130", "绿茶", "Wuyuan green tea", "tea", "ambient", "tea",
           (16_000, 60_000), ("明前", "茗眉")),
    _brand("武夷山大红袍", "350782", "岩茶", "Wuyishan Da Hong Pao", "tea", "ambient", "tea",
           (30_000, 160_000), ("大红袍", "肉桂", "水仙")),
    _brand("恩施玉露", "422801", "玉露", "Enshi Yulu", "tea", "ambient", "tea",
           (20_000, 80_000), ("蒸青", "富硒")),
    _brand("会理石榴", "513425", "石榴", "Huili pomegranates", "fresh_fruit", "chilled",
           "fruit", (800, 2_400), ("突尼斯软籽", "青皮")),
    _brand("盐源苹果", "513423", "苹果", "Yanyuan apples", "fresh_fruit", "chilled", "fruit",
           (600, 1_800), ("丑苹果", "冰糖心")),
    _brand("莱阳梨", "370682", "莱阳梨", "Laiyang pears", "fresh_fruit", "chilled", "fruit",
           (600, 1_800), ("茌梨", "脆甜")),
    _brand("宁陵酥梨", "411423", "酥梨", "Ningling crisp pears", "fresh_fruit", "chilled",
           "fruit", (400, 1_200), ("金顶谢花",)),
    _brand("隆德土蜂蜜", "640423", "蜂蜜", "Longde honey", "honey_specialties", "ambient",
           "liquid", (6_000, 14_000), ("百花蜜", "山花蜜")),
    _brand("彭阳小杂粮", "640425", "小米", "Pengyang millet", "grains", "ambient", "grain",
           (1_000, 2_400), ("黄小米", "糜子", "荞麦")),
    _brand("榆中高原夏菜", "620123", "娃娃菜", "Yuzhong highland cabbage", "vegetables",
           "chilled", "fruit", (200, 600), ("高原", "冷凉")),
    _brand("米易枇杷", "510421", "枇杷", "Miyi loquats", "fresh_fruit", "chilled", "fruit",
           (1_600, 4_000), ("早熟", "白肉")),
    _brand("合水苹果", "621024", "苹果", "Heshui apples", "fresh_fruit", "chilled", "fruit",
           (500, 1_400), ("红富士",)),
    _brand("平阴玫瑰", "370124", "玫瑰花茶", "Pingyin rose tea", "tea", "ambient", "tea",
           (16_000, 50_000), ("重瓣红玫瑰", "花冠")),
)  # fmt: skip

# unbranded staples, most frequent first
STAPLES: tuple[Product, ...] = (
    Product("土豆", "vegetables", "ambient", "grain", (150, 500), ("黄心", "新土豆", "沙瓤")),
    Product("红枣", "dried_fruit_nuts", "ambient", "dry", (1_000, 3_000), ("骏枣", "灰枣")),
    Product("小米", "grains", "ambient", "grain", (800, 2_000), ("黄小米", "月子米")),
    Product("胡麻油", "edible_oil", "ambient", "liquid", (3_000, 6_000), ("冷榨", "头道压榨")),
    Product("土鸡蛋", "eggs_poultry", "ambient", "eggs", (1_600, 3_000), ("散养", "农家")),
    Product("核桃", "dried_fruit_nuts", "ambient", "dry", (2_000, 5_000), ("薄皮", "纸皮")),
    Product("荞麦面", "flour_noodles", "ambient", "grain", (1_000, 2_400), ("手工", "苦荞")),
    Product("葡萄干", "dried_fruit_nuts", "ambient", "dry", (2_000, 5_000), ("无籽", "绿香妃")),
    Product("玉米", "grains", "ambient", "grain", (300, 800), ("糯玉米", "甜玉米")),
    Product("百合", "vegetables", "ambient", "dry", (8_000, 20_000), ("兰州", "鲜百合")),
    Product("香菇", "vegetables", "ambient", "dry", (5_000, 12_000), ("花菇", "干香菇")),
    Product("挂面", "flour_noodles", "ambient", "grain", (800, 2_000), ("手工", "空心")),
    Product("菜籽油", "edible_oil", "ambient", "liquid", (2_000, 4_000), ("压榨", "小榨")),
    Product("土鸡", "eggs_poultry", "frozen", "meat", (4_000, 8_000), ("散养", "跑山鸡")),
    Product("黄豆", "grains", "ambient", "grain", (600, 1_400), ("非转基因",)),
    Product("花生", "dried_fruit_nuts", "ambient", "dry", (1_200, 2_800), ("红皮", "五香")),
    Product("羊肉", "meat", "frozen", "meat", (7_000, 13_000), ("羊排", "羔羊")),
    Product("蜂蜜", "honey_specialties", "ambient", "liquid", (4_000, 10_000), ("土蜂蜜",)),
    Product("苹果", "fresh_fruit", "chilled", "fruit", (400, 1_200), ("红富士",)),
    Product("枸杞", "dried_fruit_nuts", "ambient", "dry", (3_000, 10_000), ("头茬",)),
    Product("黄花菜", "vegetables", "ambient", "dry", (3_000, 8_000), ("干货",)),
    Product("苦荞茶", "tea", "ambient", "tea", (6_000, 16_000), ("黑苦荞",)),
    Product("燕麦米", "grains", "ambient", "grain", (1_200, 2_800), ("莜麦",)),
    Product("鸭蛋", "eggs_poultry", "ambient", "eggs", (1_600, 3_200), ("咸鸭蛋", "红心")),
)  # fmt: skip


STAPLE_NAMES_EN = {
    "土豆": "potatoes", "红枣": "jujubes", "小米": "millet", "胡麻油": "linseed oil",
    "土鸡蛋": "free-range eggs", "核桃": "walnuts", "荞麦面": "buckwheat noodles",
    "葡萄干": "raisins", "玉米": "corn", "百合": "lily bulbs", "香菇": "shiitake",
    "挂面": "noodles", "菜籽油": "rapeseed oil", "土鸡": "free-range chicken",
    "黄豆": "soybeans", "花生": "peanuts", "羊肉": "mutton", "蜂蜜": "honey",
    "苹果": "apples", "枸杞": "goji", "黄花菜": "daylily", "苦荞茶": "tartary buckwheat tea",
    "燕麦米": "oat rice", "鸭蛋": "duck eggs",
}  # fmt: skip


@dataclass(frozen=True)
class County:
    code: str
    name: str  # 靖远县
    short: str  # 靖远
    pinyin: str  # jingyuan
    city: str | None
    province: str
    latitude: float
    longitude: float


@lru_cache(maxsize=1)
def counties() -> dict[str, County]:
    """Every county-level region of the gazetteer the project ships, with its city and
    province names, from the same file the migrations load into `region`."""
    from market.regions.gazetteer import read_gazetteer

    rows = list(read_gazetteer())
    names = {r.code: r.name_zh for r in rows}
    found: dict[str, County] = {}
    for row in rows:
        if row.level != "county":
            continue
        city = row.parent_code if row.parent_code and row.parent_code.endswith("00") else None
        if city is not None and city.endswith("0000"):
            city = None
        province = row.code[:2] + "0000"
        found[row.code] = County(
            row.code,
            row.name_zh,
            row.short_name_zh,
            row.name_pinyin,
            names.get(city) if city else None,
            names.get(province, ""),
            float(row.latitude),
            float(row.longitude),
        )
    return found


class Zipf:
    """Draws items with weight 1/(rank+1)^s, the first most often."""

    def __init__(self, items: Sequence[object], s: float = 1.0) -> None:
        self.items = list(items)
        self.cumulative = list(itertools.accumulate(1 / (k + 1) ** s for k in range(len(items))))

    def index(self, rng: random.Random) -> int:
        return bisect.bisect_left(self.cumulative, rng.random() * self.cumulative[-1])


@dataclass(frozen=True)
class Spec:
    listings: int = 100_000
    seed: int = 20_261_130
    anchor: dt.datetime = ANCHOR  # publication times fall within the year before it


def cooperative_id(seed: int, county: str, number: int) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{seed}:{county}:{number}"))


@lru_cache(maxsize=65_536)
def cooperative_name(seed: int, county: County, number: int, product: Product) -> str:
    """靖远县东湾镇枸杞种植农民专业合作社: the town and kind fixed by seed, county and number."""
    rng = random.Random(f"{seed}:{county.code}:{number}")
    town = TOWNS[rng.randrange(len(TOWNS))]
    if product.category in ("meat", "eggs_poultry"):
        kind = "养殖"
    elif product.category == "tea":
        kind = "茶叶"
    else:
        kind = COOPERATIVE_KINDS[rng.randrange(len(COOPERATIVE_KINDS))]
    return f"{county.name}{town}镇{product.name}{kind}农民专业合作社"


def english_size(label: str, grams: int) -> str:
    if label.endswith("枚"):
        return f"{label[:-1]} eggs"
    if label == "整只":
        return "whole"
    return f"{grams / 1000:g} kg" if grams >= 1000 else f"{grams} g"


def documents(spec: Spec) -> Iterator[ListingDocument]:
    """`spec.listings` documents, generated lazily; the same ones for the same seed (a shorter
    run yields a prefix of a longer one)."""
    rng = random.Random(spec.seed)
    places = counties()
    for product in BRANDS:
        if product.county not in places:
            raise SystemExit(f"the gazetteer has no county {product.county} ({product.brand})")
    # staples come from the brand counties (a third), else from all counties with a lean to
    # Gansu (62) and Ningxia (64), each list in a seeded order drawn by Zipf
    order = random.Random(spec.seed + 1)
    northwest = sorted(c for c in places if c[:2] in ("62", "64"))
    elsewhere = sorted(c for c in places if c[:2] not in ("62", "64"))
    order.shuffle(northwest)
    order.shuffle(elsewhere)
    brand_counties = [p.county for p in BRANDS if p.county]
    county_lists = (brand_counties, northwest, elsewhere)
    county_zipfs = tuple(Zipf(c, 0.9) for c in county_lists)
    brands, staples = Zipf(BRANDS, 1.0), Zipf(STAPLES, 1.0)
    grades, packagings = Zipf(GRADES, 1.1), Zipf(PACKAGINGS, 1.1)
    general = Zipf(GENERAL_VARIETIES, 1.2)
    sizes = {family: Zipf(options, 1.0) for family, options in SIZES.items()}
    cooperatives = Zipf(range(COOPERATIVES_PER_COUNTY), 1.2)
    varieties = {p: Zipf(p.varieties) for p in (*BRANDS, *STAPLES) if p.varieties}
    year = 365 * 86_400

    for _ in range(spec.listings):
        if rng.random() < 0.62:
            product = BRANDS[brands.index(rng)]
            assert product.county is not None
            county = places[product.county]
        else:
            product = STAPLES[staples.index(rng)]
            which = rng.choices((0, 1, 2), (0.3, 0.45, 0.25))[0]
            codes = county_lists[which]
            county = places[str(codes[county_zipfs[which].index(rng)])]

        # the title
        head = product.brand or (
            f"{county.short}{product.name}" if rng.random() < 0.6 else product.name
        )
        grade = GRADES[grades.index(rng)] if rng.random() < 0.7 else ""
        variety = ""
        if product.varieties and rng.random() < 0.6:
            variety = product.varieties[varieties[product].index(rng)]
        elif rng.random() < 0.3:
            variety = GENERAL_VARIETIES[general.index(rng)]
        size_label, grams = SIZES[product.sizes][sizes[product.sizes].index(rng)]
        packaging = PACKAGINGS[packagings.index(rng)] if rng.random() < 0.65 else ""
        middle = grade + variety if rng.random() < 0.5 else " ".join(filter(None, (grade, variety)))
        tail = size_label + packaging if rng.random() < 0.6 else f"{size_label} {packaging}"
        title = " ".join(part for part in (head, middle, tail.strip()) if part)
        title_en = None
        if rng.random() < 0.35:
            name_en = (
                product.name_en or f"{county.pinyin.capitalize()} {STAPLE_NAMES_EN[product.name]}"
            )
            title_en = f"{name_en}, {english_size(size_label, grams)}" + (
                ", gift box" if "礼盒" in packaging else ""
            )

        # who sells it
        number = cooperatives.index(rng)
        cooperative = cooperative_name(spec.seed, county, number, product)

        # the rest
        certifications: list[str] = []
        if rng.random() < (product.gi if product.brand else 0.05):
            certifications.append("gi")
        if rng.random() < 0.25:
            certifications.append("green_food")
        if rng.random() < 0.05:
            certifications.append("organic")
        if rng.random() < 0.2:
            certifications.append("pollution_free")
        storage = product.storage
        if storage == "frozen" and rng.random() < 0.3:
            storage = "chilled"
        mode = rng.random()
        sale_mode = "fixed" if mode < 0.85 else "negotiable" if mode < 0.97 else "auction"
        low, high = product.price_per_kg
        factor = {"特级": 1.3, "超特级": 1.5, "特优": 1.35, "一级": 1.1}.get(grade, 1.0)
        per_kg = rng.uniform(low, high) * factor * (1.2 if "礼盒" in packaging else 1.0)
        price = max(100, round(per_kg * grams / 1000 / 10) * 10)
        poverty = county.code in POVERTY_COUNTIES
        share: int | None = None
        if rng.random() >= 0.35:
            share = round(
                rng.betavariate(2, 3) * 10_000 if poverty else rng.betavariate(1, 6) * 10_000
            )
        published = spec.anchor - dt.timedelta(seconds=rng.randrange(year))
        jitter_lat, jitter_lon = rng.uniform(-0.05, 0.05), rng.uniform(-0.05, 0.05)

        yield ListingDocument(
            id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            version=1,
            title_zh=title,
            title_en=title_en,
            product_name_zh=product.name,
            regional_brand=product.brand,
            cooperative_id=cooperative_id(spec.seed, county.code, number),
            cooperative_name_zh=cooperative,
            county_code=county.code,
            county_name_zh=county.name,
            city_name_zh=county.city,
            province_name_zh=county.province,
            is_poverty_county=poverty,
            category_code=product.category,
            certifications=tuple(certifications),
            storage_class=storage,
            sale_mode=sale_mode,
            unit_price_fen=price,
            quantity_available=max(1, int(rng.lognormvariate(4.0, 1.2))),
            poor_share_bp=share,
            location=GeoPoint(
                round(county.latitude + jitter_lat, 6), round(county.longitude + jitter_lon, 6)
            ),
            published_at=published,
        )


def batches(spec: Spec, size: int) -> Iterator[list[ListingDocument]]:
    iterator = documents(spec)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.search_data",
        description="Print generated search-benchmark listing documents as JSON lines.",
    )
    parser.add_argument("--listings", type=int, default=20)
    parser.add_argument("--seed", type=int, default=Spec().seed)
    args = parser.parse_args(argv)
    for doc in documents(Spec(listings=args.listings, seed=args.seed)):
        sys.stdout.write(json.dumps(document_to_json(doc), ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
