"""The web of the sample crawl: sites of eight kinds in English and Chinese, their URL patterns
and their boilerplate (navigation, breadcrumbs, sidebars, cookie banners, footers)."""

from __future__ import annotations

import dataclasses
import random
import re
import urllib.parse

KINDS = ("encyclopedia", "news", "forum", "docs", "academic", "government", "shop", "blog")


@dataclasses.dataclass(frozen=True)
class Site:
    """One website: host, kind, language, display name and URL pattern (a format string)."""

    host: str
    kind: str
    lang: str
    name: str
    pattern: str  # fields: {slug} {num} {date} {ym} {hex} {title}
    charset: str = "utf-8"  # gbk / big5 sites serve legacy encodings

    def url(self, title: str, rng: random.Random, when) -> str:
        slug = _slug(title) if self.lang == "en" else urllib.parse.quote(title)
        path = self.pattern.format(
            slug=slug,
            title=urllib.parse.quote(title.replace(" ", "_")),
            num=rng.randrange(10**6, 10**8),
            hex=f"{rng.getrandbits(40):010x}",
            date=when.strftime("%Y-%m-%d"),
            ym=when.strftime("%Y/%m"),
            mon=when.strftime("%b").lower(),
            year=when.year,
            day=when.strftime("%d"),
        )
        return f"https://{self.host}{path}"


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:60]


S = Site
SITES = [
    S("en.wikipedia.org", "encyclopedia", "en", "Wikipedia", "/wiki/{title}"),
    S("www.britannica.com", "encyclopedia", "en", "Britannica", "/topic/{slug}"),
    S("www.bbc.co.uk", "news", "en", "BBC News", "/news/world-{num}"),
    S("www.theguardian.com", "news", "en", "The Guardian", "/politics/{year}/{mon}/{day}/{slug}"),
    S("www.reuters.com", "news", "en", "Reuters", "/world/us/{slug}-{date}/"),
    S("stackoverflow.com", "forum", "en", "Stack Overflow", "/questions/{num}/{slug}"),
    S("www.reddit.com", "forum", "en", "reddit", "/r/AskHistorians/comments/{hex}/{slug}/"),
    S("docs.python.org", "docs", "en", "Python documentation", "/3/library/{slug}.html"),
    S("developer.mozilla.org", "docs", "en", "MDN Web Docs", "/en-US/docs/Web/{slug}"),
    S("arxiv.org", "academic", "en", "arXiv", "/abs/2402.{num}"),
    S("history.stanford.edu", "academic", "en", "Stanford History", "/research/{slug}"),
    S("www.archives.gov", "government", "en", "National Archives", "/legislative/{slug}.html"),
    S("www.gov.uk", "government", "en", "GOV.UK", "/government/speeches/{slug}"),
    S("www.amazon.com", "shop", "en", "Amazon.com", "/{slug}/dp/B0{num}"),
    S("shop.historybooks.com", "shop", "en", "History Books Shop", "/products/{slug}"),
    S("medium.com", "blog", "en", "Medium", "/@historian/{slug}-{hex}"),
    S("civicnotes.blogspot.com", "blog", "en", "Civic Notes", "/{ym}/{slug}.html"),
    S("zh.wikipedia.org", "encyclopedia", "zh", "维基百科", "/wiki/{slug}"),
    S("baike.baidu.com", "encyclopedia", "zh", "百度百科", "/item/{slug}"),
    S("news.sina.com.cn", "news", "zh", "新浪新闻", "/c/{date}/doc-i{hex}.shtml"),
    S("www.chinanews.com.cn", "news", "zh", "中国新闻网", "/gn/{ym}/{num}.shtml"),
    S("www.zhihu.com", "forum", "zh", "知乎", "/question/{num}"),
    S("tieba.baidu.com", "forum", "zh", "百度贴吧", "/p/{num}"),
    S("docs.python.org", "docs", "zh", "Python 文档", "/zh-cn/3/library/{num}.html"),
    S("www.tsinghua.edu.cn", "academic", "zh", "清华大学", "/info/1{num}.htm"),
    S("www.gov.cn", "government", "zh", "中国政府网", "/zhengce/{ym}/content_{num}.htm"),
    S("item.jd.com", "shop", "zh", "京东", "/{num}.html"),
    S("blog.csdn.net", "blog", "zh", "CSDN博客", "/history_fan/article/details/{num}"),
    S("www.jianshu.com", "blog", "zh", "简书", "/p/{hex}"),
    # legacy encodings: mainland GBK sites and Taiwan / Hong Kong Big5 sites
    S("www.xinhuanet.net.cn", "news", "zh", "新华资讯", "/politics/{date}/c_{num}.htm", "gbk"),
    S("bbs.tianya.cn", "forum", "zh", "天涯社区", "/post-no05-{num}-1.shtml", "gbk"),
    S("www.ltn.com.tw", "news", "zh", "自由時報", "/news/politics/breakingnews/{num}", "big5"),
    S("www.edu.tw", "academic", "zh", "教育部", "/News_Content.aspx?n={num}", "big5"),
    S("forum.hkgolden.com", "forum", "zh", "香港高登", "/view.aspx?message={num}", "big5"),
]
del S

SPAM_HOSTS = [
    "best-cheap-watches-online.xyz",
    "free-movie-download-hd.top",
    "casino-bonus-2024.win",
    "seo-links-directory.info",
    "dl-soft-123.cn",
    "mianfei-dianying.cc",
]

NAV = {
    "en": {
        "encyclopedia": ["Main page", "Contents", "Current events", "Random article", "About", "Contact us", "Donate"],
        "news": ["Home", "World", "US", "Politics", "Business", "Tech", "Science", "Sport", "Opinion"],
        "forum": ["Home", "Questions", "Tags", "Users", "Companies", "Unanswered"],
        "docs": ["Tutorial", "Library Reference", "Language Reference", "How-tos", "FAQ", "Glossary"],
        "academic": ["Home", "People", "Research", "Courses", "Publications", "News & Events"],
        "government": ["Home", "Topics", "Services", "Publications", "Research", "Contact"],
        "shop": ["All departments", "Deals", "Best sellers", "New releases", "Customer service", "Gift cards"],
        "blog": ["Home", "About me", "Archive", "Categories", "Subscribe"],
    },
    "zh": {
        "encyclopedia": ["首页", "分类索引", "特色内容", "新闻动态", "随机条目", "帮助"],
        "news": ["首页", "国内", "国际", "财经", "科技", "体育", "娱乐", "评论"],
        "forum": ["首页", "发现", "等你来答", "热榜", "话题广场"],
        "docs": ["教程", "标准库参考", "语言参考", "安装和使用", "常见问题", "术语对照表"],
        "academic": ["学校首页", "学校概况", "院系设置", "教育教学", "科学研究", "招生就业"],
        "government": ["首页", "国务院", "总理", "新闻", "政策", "互动", "服务", "数据"],
        "shop": ["全部商品分类", "秒杀", "优惠券", "PLUS会员", "品牌闪购", "京东超市"],
        "blog": ["首页", "博客", "专栏课程", "下载", "问答", "社区"],
    },
}

SIDEBAR = {
    "en": (
        "Most read",
        [
            "Markets rally as inflation cools",
            "Ten tips for a better night's sleep",
            "How the new tax rules affect you",
            "Weather: storms expected this weekend",
            "The best laptops of the year, tested",
            "Local council approves new park",
            "Watch: highlights from last night's game",
            "Opinion: the case for public libraries",
        ],
    ),
    "zh": (
        "热门推荐",
        [
            "全国多地迎来降温天气",
            "央行公布最新货币政策",
            "新能源汽车销量再创新高",
            "高考志愿填报指南发布",
            "春运火车票今日开售",
            "专家解读最新经济数据",
            "国产大飞机完成首次商业飞行",
            "各地推出文旅消费新举措",
        ],
    ),
}

COOKIE = {
    "en": [
        "We use cookies to improve your experience on our site, to personalise content and ads and to "
        'analyse our traffic. By clicking "Accept all" you agree to our use of cookies.',
        "This website uses cookies. Read our Privacy Policy to learn more.",
    ],
    "zh": [
        "本网站使用Cookie以改善您的浏览体验，继续浏览即表示您同意我们使用Cookie。",
        "我们使用Cookie来提供个性化内容和广告，并分析网站流量。",
    ],
}

FOOTER = {
    "en": "© {year} {name}. All rights reserved. | Privacy Policy | Terms of Use | Cookie Settings | "
    "Accessibility | Contact Us | Advertise with us",
    "zh": "版权所有 © {year} {name} | 关于我们 | 联系我们 | 隐私政策 | 用户协议 | 京ICP备{icp}号 | 违法和不良信息举报电话：12377",
}

SHARE = {"en": "Share this: Facebook Twitter LinkedIn Email Print", "zh": "分享到：微信 微博 QQ空间 复制链接"}

USERS = ["jsmith42", "history_buff", "code_monkey", "maria.g", "user1234567", "quietreader", "drwatson"]
ZH_USERS = ["历史爱好者", "江南布衣", "匿名用户", "老王说史", "三国迷", "风清扬"]
