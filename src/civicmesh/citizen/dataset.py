# ruff: noqa: E501  (template data: long string lists read better unbroken)
"""A seeded generator of the labelled dispatch dataset (citizen requests -> responsible department).

No public corpus of 12345 requests can be shipped, so the project writes its own: hand-written request
templates per department in Chinese and English, filled with places, times, amounts and companies, wrapped in
varied openings and closings, and with a share of sentences that mention another department's business (the
confusions a real dispatcher faces: noise goes to ecology, police or housing depending on the source; a leaking
roof is housing, a leaking main is water). `python -m civicmesh.citizen.dataset` rewrites
`data/dispatch_dataset.json`; the same seed always gives the same file, including the held-out split.

Each row names its template. The fixed split is random within department x language, so test requests are new
fillings and wordings of subjects seen in training (as a hotline's new calls mostly are); `unseen_template_split`
gives the harsher view where whole subjects are held out.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

SEED = 12345
PER_DEPARTMENT = 145
TEST_SHARE = 0.25
CHINESE_SHARE = 0.55
DATASET_PATH = Path(__file__).parent / "data" / "dispatch_dataset.json"

SLOTS_ZH: dict[str, list[str]] = {
    "place": [
        "幸福小区",
        "滨江花园",
        "解放路",
        "科技大道",
        "人民公园附近",
        "火车站东广场",
        "翠苑三区",
        "南门菜市场旁",
        "学院路和文三路路口",
        "望江新村",
        "老城区中山街",
        "高新区创业园",
        "江滨路",
        "阳光家园二期",
        "城东批发市场",
        "和平里社区",
    ],
    "time": [
        "最近一周",
        "这几天",
        "已经一个多月了",
        "从上周开始",
        "每天晚上",
        "今天早上",
        "连续三天",
        "半个月来",
        "昨天下午",
    ],
    "num": ["3", "5", "8", "12", "20", "35", "50", "120", "300", "2000", "6800"],
    "bus": ["8", "15", "27", "103", "K2", "301", "夜班2"],
    "company": ["一家装修公司", "某物流公司", "一家餐饮店", "某建筑劳务公司", "一家电子厂", "某保洁公司"],
}
SLOTS_EN: dict[str, list[str]] = {
    "place": [
        "Xingfu Estate",
        "Binjiang Garden",
        "Jiefang Road",
        "Keji Avenue",
        "near People's Park",
        "the east square of the railway station",
        "Cuiyuan Block 3",
        "the South Gate market",
        "the Xueyuan Rd and Wensan Rd junction",
        "Wangjiang New Village",
        "Zhongshan Street",
        "the High-Tech startup park",
        "Jiangbin Road",
        "Sunshine Homes phase 2",
    ],
    "time": [
        "for a week now",
        "these past few days",
        "for over a month",
        "since last week",
        "every night",
        "this morning",
        "three days in a row",
        "for two weeks",
        "yesterday afternoon",
    ],
    "num": ["3", "5", "8", "12", "20", "35", "50", "120", "300", "2000", "6800"],
    "bus": ["8", "15", "27", "103", "K2", "301", "N2"],
    "company": [
        "a renovation firm",
        "a logistics company",
        "a restaurant",
        "a construction labour agency",
        "an electronics factory",
        "a cleaning company",
    ],
}

OPEN_ZH = [
    "",
    "",
    "您好，",
    "你好，我想反映一下，",
    "市民来电反映：",
    "我是{place}的居民，",
    "我要投诉，",
    "请问，",
    "想咨询一下，",
    "麻烦问一下，",
    "再次反映：",
    "网友留言：",
]
CLOSE_ZH = [
    "",
    "",
    "希望尽快处理。",
    "请相关部门管一管。",
    "谢谢！",
    "多次反映无果。",
    "麻烦给个答复。",
    "请尽快回复。",
    "希望政府重视。",
    "已经影响到正常生活了。",
]
OPEN_EN = [
    "",
    "",
    "Hello, ",
    "Hi, I want to report that ",
    "Caller reports: ",
    "I live at {place} and ",
    "Complaint: ",
    "Quick question: ",
    "Again: ",
    "Dear hotline, ",
]
CLOSE_EN = [
    "",
    "",
    " Please fix it soon.",
    " Someone should look into this.",
    " Thanks.",
    " I have reported this several times.",
    " Please get back to me.",
    " This is affecting daily life.",
    " Hope the city takes it seriously.",
]

# department -> (Chinese templates, English templates, short "mentions" that leak into other requests)
TEMPLATES: dict[str, tuple[list[str], list[str], list[str], list[str]]] = {
    "transport": (
        [
            "{place}的{bus}路公交车{time}经常晚点，等了四十分钟都不来",
            "{bus}路公交司机开车太猛，急刹车把老人摔倒了",
            "出租车司机在{place}拒载，还不打表",
            "建议在{place}增设公交站点，附近居民出行很不方便",
            "网约车司机故意绕路，多收了{num}元",
            "{place}公交站台的顶棚坏了，下雨没地方躲",
            "地铁站到{place}没有接驳公交，最后一公里太难走",
            "{place}主干道路面开裂下沉，大货车经过颠得厉害",
            "请问老年人免费乘车卡怎么办理",
            "{bus}路公交末班车太早，加班的人回不了家",
            "长途客运站售票窗口太少，排队{time}",
            "{place}附近的公交线路被取消了，希望恢复",
        ],
        [
            "Bus {bus} at {place} is always late {time}; we waited forty minutes",
            "The driver of bus {bus} brakes so hard that an old lady fell over",
            "A taxi at {place} refused to take me and would not use the meter",
            "Please add a bus stop near {place}, residents cannot get anywhere",
            "My ride-hailing driver took a detour and charged {num} yuan extra",
            "The shelter at the {place} bus stop is broken, no cover when it rains",
            "No feeder bus from the metro station to {place}, the last mile is a pain",
            "The main road at {place} has cracked and sunk, lorries bounce over it",
            "How do seniors apply for a free bus pass?",
            "The last bus {bus} leaves too early for night-shift workers",
            "Bus route {bus} through {place} was cancelled, please bring it back",
        ],
        ["公交车", "公交站"],
        ["the bus", "the bus stop"],
    ),
    "housing": (
        [
            "{place}小区电梯{time}坏了三次，物业一直不修",
            "开发商延期交房{num}个月了，也没有任何说法",
            "新买的房子墙面开裂渗水，开发商推脱责任",
            "物业费年年涨，服务越来越差，楼道没人打扫",
            "老旧小区改造施工把楼道弄得一团糟，工期一拖再拖",
            "想咨询公租房申请需要什么条件",
            "房屋维修基金怎么申请使用？楼顶漏水要维修",
            "{place}工地晚上十一点还在浇筑混凝土，有夜间施工许可吗",
            "二手房网签备案办理太慢",
            "物业私自把小区绿地改成收费停车位",
            "业主委员会选举被物业操纵",
            "楼上卫生间漏水到我家天花板，物业不管",
        ],
        [
            "The lift at {place} broke down three times {time} and the property company won't fix it",
            "The developer has delayed handing over our flat by {num} months",
            "My new flat has cracked walls and damp, the developer denies responsibility",
            "Property fees go up every year while the stairwells are never cleaned",
            "The old-estate renovation at {place} is dragging on and the stairs are a mess",
            "What are the conditions for applying for public rental housing?",
            "How do I use the housing maintenance fund? Our roof leaks",
            "The site at {place} is pouring concrete at 11pm, do they have a night-work permit?",
            "The property manager turned our lawn into paid parking",
            "Water from the upstairs bathroom leaks into my ceiling and the property company ignores it",
        ],
        ["物业也不管", "小区物业"],
        ["the property company does nothing", "our estate management"],
    ),
    "urban_management": (
        [
            "{place}路边占道经营的小摊贩太多，人行道都走不了",
            "{place}有人私搭乱建，在楼顶加盖了一层",
            "{place}的垃圾桶满了{time}都没人清运，臭气熏天",
            "{place}一排路灯{time}都不亮，晚上走路很危险",
            "{place}的井盖丢了，很容易掉进去",
            "共享单车在{place}地铁口乱停乱放，堵住了盲道",
            "店铺招牌摇摇欲坠，担心砸到人",
            "烧烤摊占道经营到深夜，满地垃圾",
            "{place}的公共厕所脏乱差没人管",
            "小广告贴满了{place}的电线杆和墙面",
            "建筑垃圾随意倾倒在{place}路边",
        ],
        [
            "Street vendors block the pavement at {place}",
            "Someone built an illegal extra floor on the roof at {place}",
            "The bins at {place} have been overflowing {time}, it stinks",
            "A whole row of streetlights on {place} has been out {time}, it's dangerous at night",
            "The manhole cover at {place} is missing, someone will fall in",
            "Shared bikes are dumped at the {place} metro exit, blocking the tactile paving",
            "A shop sign is hanging loose and could fall on someone",
            "A barbecue stall occupies the road until late at night and leaves rubbish",
            "Flyers are plastered all over the poles and walls at {place}",
            "Construction waste dumped by the roadside at {place}",
        ],
        ["路边摆摊的", "垃圾没人清"],
        ["the vendors outside", "rubbish piling up"],
    ),
    "ecology": (
        [
            "{place}附近的化工厂{time}排放刺鼻气味，晚上更严重",
            "{place}旁边的河道被排入污水，水面发黑发臭",
            "有人在{place}露天焚烧垃圾，浓烟滚滚",
            "工厂机器二十四小时运转，噪声很大，吵得睡不着",
            "{place}工地扬尘严重，没有覆盖防尘网",
            "有企业偷偷倾倒危险废物",
            "餐馆油烟不经净化直排进居民楼",
            "附近新建的基站辐射会不会超标",
            "养殖场污水直排，周边臭味很大",
            "{place}的电镀厂夜里偷排废水",
        ],
        [
            "The chemical plant near {place} has been giving off an acrid smell {time}",
            "Sewage is discharged into the river by {place}, the water is black and smells",
            "Someone is burning rubbish in the open at {place}, thick smoke everywhere",
            "The factory machines run 24 hours and the noise keeps us awake",
            "The construction site at {place} throws up dust, no dust nets at all",
            "A company is secretly dumping hazardous waste",
            "A restaurant's kitchen fumes go straight into our building without filtering",
            "Is the radiation from the new mast near {place} within limits?",
            "A pig farm discharges waste water and the whole area smells",
        ],
        ["有股怪味", "河水发臭"],
        ["there is a strange smell", "the river smells"],
    ),
    "water": (
        [
            "{place}{time}停水了，也没有提前通知",
            "自来水发黄有异味，烧开后有沉淀",
            "{place}路面有水管爆裂，水一直往外冒",
            "{place}下水道堵塞，污水漫到路面上",
            "一下雨{place}就积水，车辆都过不去",
            "家里水压太低，高层根本用不上水",
            "水费突然比上个月多了{num}元，怀疑水表有问题",
            "{place}的雨水井盖被堵，排水不畅",
            "请问开通自来水户需要什么材料",
            "二次供水水箱多年没清洗",
        ],
        [
            "No water at {place} {time} and no notice beforehand",
            "Tap water is yellow and smells, leaves sediment",
            "A water main burst on {place}, water keeps gushing out",
            "The sewer at {place} is blocked and sewage runs onto the road",
            "Every time it rains {place} floods and cars can't get through",
            "Water pressure is so low upstairs we get nothing",
            "My water bill jumped by {num} yuan, I think the meter is faulty",
            "The storm drain at {place} is clogged",
            "The rooftop water tank hasn't been cleaned in years",
        ],
        ["停水", "路上积水"],
        ["the water was off", "the flooding"],
    ),
    "market": (
        [
            "在{place}的超市买到过期食品，商家拒绝退换",
            "{place}的健身房突然关门，预付卡里还有{num}元退不了",
            "菜市场的秤缺斤短两，{num}斤菜少了二两",
            "{place}一家小饭馆无证经营，后厨卫生很差",
            "网上买的商品是假货，商家不给退款",
            "药店的标价和结账价格不一致",
            "美容店办卡时承诺的服务现在不兑现",
            "饭店在菜里吃出了异物，老板态度恶劣",
            "商场促销先涨价再打折",
            "{place}的培训机构卷钱跑路，学费{num}元退不回来",
        ],
        [
            "Bought expired food at a supermarket at {place}, they refuse a refund",
            "The gym at {place} closed suddenly with {num} yuan left on my prepaid card",
            "The market scales are rigged, I was short-changed on {num} jin of vegetables",
            "An unlicensed eatery at {place} has a filthy kitchen",
            "What I bought online is fake and the seller won't refund",
            "The pharmacy's shelf price differs from what I was charged",
            "Found something in my food at a restaurant and the owner was rude",
            "The mall raised prices before its so-called discount",
        ],
        ["附近有家饭店", "商家"],
        ["a restaurant nearby", "the shop"],
    ),
    "hr_social": (
        [
            "我在{company}上班，老板拖欠了{num}个月工资",
            "公司不跟我们签劳动合同，也不交社保",
            "想咨询一下退休后养老金怎么计算",
            "失业保险金怎么申领？需要哪些材料",
            "包工头跑了，{num}名农民工的工钱没着落",
            "公司违法解除劳动合同，不给经济补偿",
            "灵活就业人员怎么缴纳社保",
            "职业技能培训补贴怎么申请",
            "公司强制加班还不给加班费",
            "工伤认定申请交了{time}还没有结果",
        ],
        [
            "I work at {company} and the boss owes me {num} months of wages",
            "The company won't sign labour contracts or pay social insurance",
            "How is my pension calculated when I retire?",
            "How do I claim unemployment benefit?",
            "The foreman ran off and {num} migrant workers are unpaid",
            "I was dismissed illegally with no severance pay",
            "How do freelancers pay into social insurance?",
            "Forced overtime with no overtime pay",
            "My work-injury claim has been pending {time}",
        ],
        ["工资还没发", "社保"],
        ["wages are late", "social insurance"],
    ),
    "health": (
        [
            "{place}社区医院的医生态度恶劣",
            "想问一下孩子的疫苗在哪里打，需要预约吗",
            "{place}有黑诊所无证行医",
            "医院挂号太难，号贩子倒卖专家号",
            "医院排队{time}，就诊流程太混乱",
            "学校有多名学生发烧，需要传染病防控指导",
            "医院乱收费，检查项目重复开",
            "急诊室医生迟迟不接诊",
            "献血证怎么用来报销用血费用",
            "母婴室被医院挪作他用",
        ],
        [
            "The doctor at the {place} community hospital was very rude",
            "Where can my child get vaccinated, do I need an appointment?",
            "There is an unlicensed clinic practising at {place}",
            "Touts resell specialist appointments at the hospital",
            "The hospital queue took {time}, the process is chaos",
            "Several pupils have a fever, we need infectious-disease guidance",
            "The hospital ordered the same tests twice and charged for both",
            "Nobody saw us in the emergency room for hours",
        ],
        ["医院", "疫苗"],
        ["the hospital", "a vaccine"],
    ),
    "education": (
        [
            "孩子明年上小学，想咨询{place}的学区划分",
            "学校违规收取{num}元资料费",
            "校外培训机构{time}还在违规补课",
            "老师体罚学生，家长很担心",
            "{place}的幼儿园收费太高",
            "学校门口放学时交通很乱，希望安排护学岗",
            "学生午餐质量差，分量少",
            "随迁子女入学需要哪些证明",
            "学校假期强制学生参加付费活动",
            "校车超载",
        ],
        [
            "My child starts primary school next year, which school zone is {place} in?",
            "The school charged {num} yuan for materials against the rules",
            "An after-school tutoring centre is still running banned classes {time}",
            "A teacher hit a pupil and parents are worried",
            "The kindergarten at {place} charges far too much",
            "School lunches are poor and portions are small",
            "What documents do migrant families need to enrol a child?",
            "The school bus is overloaded",
        ],
        ["旁边就是学校", "孩子上学"],
        ["right next to a school", "the kids going to school"],
    ),
    "public_security": (
        [
            "楼上邻居每天半夜吵闹，敲门沟通无效",
            "{place}电动车被盗，报警后没有消息",
            "想咨询新生儿落户需要哪些材料",
            "身份证丢了怎么补办",
            "{place}路口经常有人闯红灯，建议交警加强管理",
            "接到冒充公检法的诈骗电话",
            "{place}有车辆长期占用消防通道",
            "广场舞音响声音太大，晚上十点还在跳",
            "{place}夜里有人聚众斗殴",
            "居住证怎么办理",
            "小区门口违停严重，救护车都进不来",
        ],
        [
            "The neighbours upstairs make a racket every midnight",
            "My e-bike was stolen at {place}, no news from police",
            "What do I need to register a newborn's hukou?",
            "I lost my ID card, how do I replace it?",
            "People keep running the red light at {place}, traffic police should act",
            "I got a scam call from someone pretending to be police",
            "A car has blocked the fire lane at {place} {time}",
            "Square-dance speakers are blasting at 10pm",
            "There was a street fight at {place} last night",
        ],
        ["路边还停满了车", "报了警"],
        ["cars parked everywhere", "I called the police"],
    ),
    "civil_affairs": (
        [
            "家里老人独居，想申请居家养老服务",
            "低保申请交上去{time}了还没有结果",
            "想咨询结婚登记需要带什么材料",
            "养老院收费不透明",
            "残疾人补贴怎么申请",
            "殡葬服务收费太高",
            "社区老年食堂什么时候开",
            "{place}有流浪人员在桥洞下过夜，天冷了需要救助",
            "高龄津贴什么时候发放",
            "社会组织登记需要哪些手续",
        ],
        [
            "My elderly father lives alone, can we get home-care services?",
            "Our minimum-living-allowance application has been pending {time}",
            "What do we bring for marriage registration?",
            "The care home's fees are not transparent",
            "How do I apply for the disability allowance?",
            "Funeral services are far too expensive",
            "A homeless man sleeps under the bridge at {place}, he needs help as it gets cold",
            "When is the old-age allowance paid?",
        ],
        ["老人", "低保"],
        ["an elderly resident", "the allowance"],
    ),
    "natural_resources": (
        [
            "不动产证办了{time}还没拿到",
            "{place}的规划公示，新楼离我们太近影响采光",
            "有人占用耕地建厂房",
            "想咨询房产证加名需要什么手续",
            "{place}山上有人非法采石",
            "规划图上这里是绿地，现在却在盖楼",
            "宅基地审批太慢",
            "测绘成果和实际面积不符",
            "土地征收补偿标准是多少",
        ],
        [
            "My property certificate has been in process {time}",
            "The new tower planned at {place} will block our light",
            "Someone built a factory on farmland",
            "How do I add my spouse to the property certificate?",
            "Illegal quarrying on the hill at {place}",
            "The plan shows green space but they are building flats",
            "What is the compensation standard for land requisition?",
            "The surveyed area differs from the real one",
        ],
        ["规划", "产权证"],
        ["the zoning plan", "the title deed"],
    ),
    "landscaping": (
        [
            "{place}的大树被台风吹倒，压住了路",
            "行道树树枝太长，挡住了{place}居民的窗户",
            "公园里的健身器材坏了",
            "绿化带被人毁坏种菜",
            "树上有很多毛毛虫，需要打药",
            "建议在{place}多建一些口袋公园",
            "公园里有人遛狗不牵绳",
            "{place}的草坪{time}没人修剪",
            "古树名木被人剥皮",
            "公园湖边护栏松动",
        ],
        [
            "A big tree at {place} was blown down by the typhoon and blocks the road",
            "Street-tree branches at {place} cover residents' windows",
            "The fitness equipment in the park is broken",
            "Someone dug up the green belt to grow vegetables",
            "The trees are full of caterpillars and need spraying",
            "Please build more pocket parks around {place}",
            "The lawn at {place} hasn't been mowed {time}",
            "The railing by the park lake is loose",
        ],
        ["绿化带", "公园"],
        ["the green belt", "the park"],
    ),
    "medical_security": (
        [
            "异地就医直接结算怎么备案",
            "医保报销比例是多少？住院花了{num}元",
            "医保卡被药店盗刷",
            "新生儿医保怎么参保",
            "门诊慢性病待遇怎么申请",
            "医保个人账户的钱能给家人用吗",
            "定点药店用医保卡卖生活用品",
            "医保缴费基数今年怎么调整",
            "住院报销材料交了{time}还没到账",
        ],
        [
            "How do I register for direct settlement of medical bills in another province?",
            "What share of a {num} yuan hospital bill does medical insurance cover?",
            "Someone used my medical insurance card at a pharmacy without permission",
            "How do I enrol my newborn in medical insurance?",
            "How do I apply for chronic-disease outpatient cover?",
            "Can family members use my medical insurance personal account?",
            "A designated pharmacy sells groceries on medical insurance cards",
            "My hospital reimbursement has not arrived {time}",
        ],
        ["医保", "报销"],
        ["medical insurance", "the reimbursement"],
    ),
}

# Word-level variation applied at random, so one template yields many surface forms.
SYNONYMS_ZH: dict[str, list[str]] = {
    "坏了": ["损坏了", "出故障了", "坏掉了"],
    "没人管": ["无人处理", "没人理", "一直没人管"],
    "太": ["非常", "特别", "实在太"],
    "想咨询": ["想了解", "请教一下", "想问问"],
    "怎么": ["如何", "该怎么"],
    "一直": ["始终", "总是"],
    "很": ["非常", "相当"],
    "需要": ["要", "得"],
    "附近": ["周边", "旁边"],
    "严重": ["厉害", "突出"],
    "还没有": ["至今没有", "迟迟没有"],
    "希望": ["建议", "恳请"],
}
SYNONYMS_EN: dict[str, list[str]] = {
    "broken": ["damaged", "out of order", "busted"],
    "please": ["kindly", "could you"],
    "won't": ["refuses to", "will not"],
    "How do I": ["How can I", "What is the way to"],
    "always": ["constantly", "regularly"],
    "dangerous": ["unsafe", "a hazard"],
    "near": ["close to", "by"],
    "no news": ["no update", "nothing heard"],
    "too": ["far too", "way too"],
    "very": ["really", "extremely"],
}

MIX_ZH = [
    "，另外{mention}也有问题",
    "，{mention}的情况也很严重",
    "，之前也反映过{mention}的事",
    "，{mention}",
]
MIX_EN = [
    ", and also {mention}",
    "; {mention} is a problem too",
    ", I also complained about {mention} before",
]


def _fill(template: str, slots: dict[str, list[str]], rng: random.Random) -> str:
    out = template
    for key, values in slots.items():
        token = "{" + key + "}"
        while token in out:
            out = out.replace(token, rng.choice(values), 1)
    return out


def _vary(text: str, synonyms: dict[str, list[str]], rng: random.Random) -> str:
    for word, options in synonyms.items():
        if word in text and rng.random() < 0.5:
            text = text.replace(word, rng.choice(options), 1)
    return text


def _roughen(text: str, rng: random.Random) -> str:
    """What real messages look like: some are cut short, some lose a character to a typing slip."""
    if len(text) > 16 and rng.random() < 0.12:
        text = text[: rng.randint(len(text) * 2 // 3, len(text) - 1)]
    if len(text) > 8 and rng.random() < 0.15:
        i = rng.randrange(1, len(text) - 1)
        text = text[:i] + text[i + 1 :]
    return text


def generate(seed: int = SEED, per_department: int = PER_DEPARTMENT) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    departments = sorted(TEMPLATES)
    for dept in departments:
        zh, en, _, _ = TEMPLATES[dept]
        # A mild class imbalance, like real hotlines: some departments get up to 30% more reports.
        count = per_department + rng.randint(-20, 20)
        seen: set[str] = set()
        attempts = 0
        while len([r for r in rows if r["label"] == dept]) < count and attempts < count * 20:
            attempts += 1
            chinese = rng.random() < CHINESE_SHARE
            other = rng.choice([d for d in departments if d != dept])
            if chinese:
                template = rng.choice(zh)
                body = _vary(_fill(template, SLOTS_ZH, rng), SYNONYMS_ZH, rng)
                if rng.random() < 0.35:
                    body += rng.choice(MIX_ZH).format(mention=rng.choice(TEMPLATES[other][2]))
                text = _fill(rng.choice(OPEN_ZH), SLOTS_ZH, rng) + body + "。" + rng.choice(CLOSE_ZH)
                text = text.replace("。。", "。").replace("？。", "？")
            else:
                template = rng.choice(en)
                body = _vary(_fill(template, SLOTS_EN, rng), SYNONYMS_EN, rng)
                if rng.random() < 0.35:
                    body += rng.choice(MIX_EN).format(mention=rng.choice(TEMPLATES[other][3]))
                opener = _fill(rng.choice(OPEN_EN), SLOTS_EN, rng)
                if opener and opener[-1] == " " and not opener.endswith(": ") and not opener.endswith(", "):
                    body = body[0].lower() + body[1:]
                text = opener + body + ("" if body.endswith("?") else ".") + rng.choice(CLOSE_EN)
                if rng.random() < 0.15:
                    text = text.lower()
            text = _roughen(text, rng)
            if text in seen:
                continue
            seen.add(text)
            template_id = f"{dept}/{'zh' if chinese else 'en'}/{(zh if chinese else en).index(template)}"
            rows.append(
                {
                    "text": text.strip(),
                    "label": dept,
                    "lang": "zh" if chinese else "en",
                    "template": template_id,
                }
            )
    # The fixed held-out split: a quarter of every department x language group, drawn with the seed.
    rng.shuffle(rows)
    by_group: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        by_group.setdefault((row["label"], row["lang"]), []).append(row)
    for group in by_group.values():
        cut = round(len(group) * TEST_SHARE)
        for i, row in enumerate(group):
            row["split"] = "test" if i < cut else "train"
    return rows


def unseen_template_split(rows: list[dict[str, Any]], seed: int = SEED) -> list[dict[str, Any]]:
    """Copies of `rows` re-split so that a quarter of each department's templates occur only in the test part."""
    rng = random.Random(seed + 1)
    templates = sorted({r["template"] for r in rows})
    held: set[str] = set()
    for dept in sorted({r["label"] for r in rows}):
        own = [t for t in templates if t.startswith(dept + "/")]
        rng.shuffle(own)
        held.update(own[: max(2, round(len(own) * TEST_SHARE))])
    return [{**r, "split": "test" if r["template"] in held else "train"} for r in rows]


def write_dataset(path: Path = DATASET_PATH, seed: int = SEED) -> int:
    rows = generate(seed)
    lines = ",\n".join(json.dumps(r, ensure_ascii=False) for r in rows)
    header = json.dumps(
        {
            "generator": "civicmesh.citizen.dataset",
            "seed": seed,
            "licence": "CC0-1.0",
            "labels": sorted(TEMPLATES),
        },
        ensure_ascii=False,
    )[:-1]
    path.write_text(header + ', "rows": [\n' + lines + "\n]}\n", encoding="utf-8")
    return len(rows)


def load_dataset(path: Path = DATASET_PATH) -> list[dict[str, Any]]:
    return list(json.loads(path.read_text(encoding="utf-8"))["rows"])


if __name__ == "__main__":
    print(f"wrote {write_dataset()} requests to {DATASET_PATH}")
