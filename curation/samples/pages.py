"""HTML and other payloads of the sample crawl: article pages of every site kind wrapped in
realistic boilerplate, low-quality pages, error pages, images and PDFs."""

from __future__ import annotations

import html
import random
import zlib

from dsllm.curation.samples.sites import COOKIE, FOOTER, NAV, SHARE, SIDEBAR, USERS, ZH_USERS, Site

_E = html.escape


def _meta_charset(charset: str | None) -> str:
    if charset is None:
        return ""
    if charset == "utf-8":
        return '<meta charset="utf-8">'
    # legacy pages declare the charset the old way
    return f'<meta http-equiv="Content-Type" content="text/html; charset={charset}">'


def render_article(
    site: Site, title: str, paragraphs: list[str], rng: random.Random, when, meta_charset: str | None = "utf-8"
) -> str:
    """A full HTML page: head, cookie banner, header+nav, breadcrumb, main content, sidebar, footer."""
    lang = site.lang
    nav = "".join(f'<li><a href="/{i}">{_E(n)}</a></li>' for i, n in enumerate(NAV[lang][site.kind]))
    side_title, side_items = SIDEBAR[lang]
    picks = rng.sample(side_items, 5)
    side = "".join(f'<li><a href="/read/{rng.randrange(10**5)}">{_E(t)}</a></li>' for t in picks)
    cookie = ""
    if rng.random() < 0.7:
        cookie = (
            f'<div id="cookie-banner" class="cookie-consent" role="dialog"><p>{_E(rng.choice(COOKIE[lang]))}</p>'
            f'<button class="accept">{"Accept all" if lang == "en" else "接受"}</button>'
            f'<button class="manage">{"Manage preferences" if lang == "en" else "设置"}</button></div>'
        )
    footer = FOOTER[lang].format(year=when.year, name=site.name, icp=rng.randrange(10**7, 10**8))
    main = _MAIN[site.kind](site, title, paragraphs, rng, when)
    sep = " - " if lang == "en" else "_"
    return (
        f'<!DOCTYPE html>\n<html lang="{"en" if lang == "en" else "zh-CN"}">\n<head>\n{_meta_charset(meta_charset)}\n'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_E(title)}{sep}{_E(site.name)}</title>\n"
        f'<link rel="stylesheet" href="/static/css/site.{rng.getrandbits(24):06x}.css">\n'
        f"<script>window.dataLayer=window.dataLayer||[];function gtag(){{dataLayer.push(arguments);}}"
        f"gtag('js',new Date());gtag('config','G-{rng.getrandbits(32):08X}');</script>\n</head>\n<body>\n"
        f"{cookie}\n"
        f'<header class="site-header"><a class="logo" href="/">{_E(site.name)}</a>'
        f'<nav class="main-nav"><ul>{nav}</ul></nav>'
        f'<form class="search" action="/search"><input name="q" placeholder="{"Search" if lang == "en" else "搜索"}">'
        f"</form></header>\n"
        f'<div class="breadcrumb"><a href="/">{_E(NAV[lang][site.kind][0])}</a> &gt; '
        f'<a href="/{site.kind}">{_E(NAV[lang][site.kind][1])}</a></div>\n'
        f'<main id="content">\n{main}\n</main>\n'
        f'<aside class="sidebar"><h3>{_E(side_title)}</h3><ul>{side}</ul></aside>\n'
        f'<footer class="site-footer"><p>{_E(footer)}</p></footer>\n'
        f'<script src="/static/js/app.{rng.getrandbits(24):06x}.js" async></script>\n</body>\n</html>\n'
    )


def _paras(paragraphs: list[str]) -> str:
    return "\n".join(f"<p>{_E(p)}</p>" for p in paragraphs)


def _date(when, lang: str) -> str:
    return when.strftime("%B %d, %Y") if lang == "en" else f"{when.year}年{when.month}月{when.day}日"


def _encyclopedia(site, title, paras, rng, when):
    tagline = "From Wikipedia, the free encyclopedia" if site.lang == "en" else "维基百科，自由的百科全书"
    half = max(1, len(paras) // 2)
    h2 = ("History", "Background") if site.lang == "en" else ("历史", "背景")
    refs = "".join(
        f"<li>{rng.choice(['Smith', 'Jones', 'Li', 'Wang'])} ({rng.randrange(1950, 2020)}). p. "
        f"{rng.randrange(1, 400)}.</li>"
        for _ in range(3)
    )
    return (
        f'<h1 class="firstHeading">{_E(title)}</h1><div class="tagline">{tagline}</div>\n'
        f'<div class="mw-parser-output">{_paras(paras[:half])}\n<h2>{h2[0]}</h2>\n{_paras(paras[half:])}\n'
        f'<h2>{"References" if site.lang == "en" else "参考文献"}</h2><ol class="references">{refs}</ol></div>\n'
        f'<div class="catlinks">{"Categories" if site.lang == "en" else "分类"}: {h2[1]}</div>'
    )


def _news(site, title, paras, rng, when):
    author = rng.choice(USERS if site.lang == "en" else ZH_USERS)
    by = f"By {author}" if site.lang == "en" else f"作者：{author}"
    return (
        f'<article><h1 class="headline">{_E(title)}</h1>'
        f'<div class="byline">{_E(by)} | <time>{_date(when, site.lang)}</time></div>\n'
        f'{_paras(paras)}\n<div class="share">{SHARE[site.lang]}</div></article>'
    )


def _forum(site, title, paras, rng, when):
    users = USERS if site.lang == "en" else ZH_USERS
    votes = "votes" if site.lang == "en" else "赞同"
    posts = [
        f'<div class="question"><h1>{_E(title)}</h1><div class="post-body">{_paras(paras[:1])}</div>'
        f'<div class="user-info">{_E(rng.choice(users))} · {rng.randrange(1, 99999)} {votes}</div></div>'
    ]
    for p in paras[1:]:
        posts.append(
            f'<div class="answer"><div class="vote-count">{rng.randrange(0, 500)}</div>'
            f'<div class="post-body"><p>{_E(p)}</p></div>'
            f'<div class="user-info">{_E(rng.choice(users))}</div></div>'
        )
    return "\n".join(posts)


def _docs(site, title, paras, rng, when):
    out = [f"<h1>{_E(title)}</h1>"]
    for i, p in enumerate(paras):
        out.append(f"<p>{_E(p)}</p>")
        if i % 2 == 0:
            out.append(
                f'<div class="highlight"><pre><code>&gt;&gt;&gt; import archive\n&gt;&gt;&gt; '
                f"archive.load({rng.randrange(1790, 2020)})</code></pre></div>"
            )
    nav = (
        "Previous topic | Next topic | This page: Show source"
        if site.lang == "en"
        else "上一主题 | 下一主题 | 显示源代码"
    )
    return "\n".join(out) + f'\n<div class="related">{nav}</div>'


def _academic(site, title, paras, rng, when):
    label = ("Abstract:", "Subjects:", "Cite as:") if site.lang == "en" else ("摘要：", "学科：", "引用：")
    return (
        f'<h1 class="title">{_E(title)}</h1><div class="authors">{_E(", ".join(rng.sample(USERS, 3)))}</div>\n'
        f'<blockquote class="abstract"><span>{label[0]}</span> {_E(paras[0])}</blockquote>\n'
        f"{_paras(paras[1:])}\n"
        f'<div class="metatable">{label[1]} History (hist.HO) | {label[2]} arXiv:2402.{rng.randrange(10**4, 10**5)}</div>'
    )


def _government(site, title, paras, rng, when):
    banner = "An official website of the government" if site.lang == "en" else "中华人民共和国中央人民政府门户网站"
    upd = "Last updated" if site.lang == "en" else "发布时间"
    return (
        f'<div class="gov-banner">{banner}</div><h1>{_E(title)}</h1>\n{_paras(paras)}\n'
        f'<div class="updated">{upd}: {_date(when, site.lang)}</div>'
    )


def _shop(site, title, paras, rng, when):
    price = (
        f"${rng.randrange(5, 90)}.{rng.randrange(100):02d}" if site.lang == "en" else f"￥{rng.randrange(20, 600)}.00"
    )
    cart = "Add to Cart" if site.lang == "en" else "加入购物车"
    rev = "Customer reviews" if site.lang == "en" else "商品评价"
    return (
        f'<h1 id="productTitle">{_E(title)}</h1><div class="price">{price}</div>'
        f'<button id="add-to-cart">{cart}</button><div id="description">{_paras(paras[:-1] or paras)}</div>'
        f'<h2>{rev}</h2><div class="review">{rng.randrange(1, 6)}★ {_E(paras[-1])}</div>'
    )


def _blog(site, title, paras, rng, when):
    posted = (
        f"Posted by {rng.choice(USERS)} on {_date(when, 'en')}"
        if site.lang == "en"
        else f"{rng.choice(ZH_USERS)} 发布于 {_date(when, 'zh')}"
    )
    comments = "Leave a comment" if site.lang == "en" else "发表评论"
    return (
        f'<article class="post"><h1 class="entry-title">{_E(title)}</h1><div class="meta">{_E(posted)}</div>\n'
        f'{_paras(paras)}\n</article><section class="comments"><h3>{comments}</h3><textarea></textarea></section>'
    )


_MAIN = {
    "encyclopedia": _encyclopedia,
    "news": _news,
    "forum": _forum,
    "docs": _docs,
    "academic": _academic,
    "government": _government,
    "shop": _shop,
    "blog": _blog,
}

# ---------------------------------------------------------------- low-quality pages

_SPAM_EN = [
    "cheap",
    "replica",
    "watches",
    "best",
    "price",
    "buy",
    "now",
    "discount",
    "free",
    "shipping",
    "casino",
    "bonus",
    "online",
    "win",
    "viagra",
    "loans",
    "fast",
    "cash",
    "deal",
    "sale",
]
_SPAM_ZH = ["免费", "下载", "高清", "电影", "在线观看", "最新", "彩票", "代开发票", "网赚", "兼职", "日结", "加微信"]
_LOREM = (
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore "
    "et dolore magna aliqua ut enim ad minim veniam quis nostrud exercitation ullamco laboris nisi ut "
    "aliquip ex ea commodo consequat duis aute irure dolor in reprehenderit in voluptate velit esse cillum "
    "dolore eu fugiat nulla pariatur excepteur sint occaecat cupidatat non proident sunt in culpa qui "
    "officia deserunt mollit anim id est laborum"
).split()


def _bare(title: str, body: str, lang: str) -> str:
    return (
        f'<!DOCTYPE html>\n<html lang="{lang}"><head><meta charset="utf-8"><title>{_E(title)}</title></head>\n'
        f"<body>\n{body}\n</body></html>\n"
    )


def spam_page(lang: str, rng: random.Random) -> tuple[str, str]:
    words = _SPAM_EN if lang == "en" else _SPAM_ZH
    title = " ".join(rng.choices(words, k=8)) if lang == "en" else "".join(rng.choices(words, k=6))
    sep = " " if lang == "en" else ""
    body = "\n".join(f"<p>{sep.join(rng.choices(words, k=60))}</p>" for _ in range(rng.randrange(3, 7)))
    hidden = "".join(f'<a href="/{w}">{w}</a> ' for w in rng.choices(words, k=40))
    return title, _bare(title, f'<h1>{title}</h1>\n{body}\n<div style="display:none">{hidden}</div>', lang)


def lorem_page(rng: random.Random) -> tuple[str, str]:
    paras = []
    for _ in range(rng.randrange(3, 7)):
        words = [rng.choice(_LOREM) for _ in range(rng.randrange(40, 90))]
        paras.append(" ".join(words).capitalize() + ".")
    title = "Lorem ipsum dolor sit amet"
    return title, _bare(title, f"<h1>{title}</h1>\n" + _paras(paras), "en")


def link_farm_page(lang: str, rng: random.Random) -> tuple[str, str]:
    words = _SPAM_EN if lang == "en" else _SPAM_ZH
    sep = " " if lang == "en" else ""
    links = "\n".join(
        f'<li><a href="http://{rng.choice(["best", "top", "go", "link"])}{rng.randrange(10**4)}.{rng.choice(["xyz", "top", "info"])}/">'
        f"{sep.join(rng.choices(words, k=3))}</a></li>"
        for _ in range(rng.randrange(80, 160))
    )
    title = "Links directory" if lang == "en" else "友情链接"
    return title, _bare(title, f"<h1>{title}</h1><ul>\n{links}\n</ul>", lang)


def short_page(lang: str, rng: random.Random) -> tuple[str, str]:
    text = rng.choice(
        ["Coming soon.", "Under construction. Check back later!", "Hello world", "Login required."]
        if lang == "en"
        else ["敬请期待", "网站建设中……", "请先登录", "页面维护中"]
    )
    return text, _bare(text, f"<p>{text}</p>", lang)


def error_page(status: int, lang: str) -> str:
    reason = {404: "Not Found", 500: "Internal Server Error", 301: "Moved Permanently"}[status]
    return (
        f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n<center><h1>{status} {reason}"
        f"</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    )


# ---------------------------------------------------------------- non-HTML payloads


def jpeg_bytes(rng: random.Random) -> bytes:
    """A JPEG-framed payload (SOI, JFIF APP0, entropy-coded-looking bytes, EOI)."""
    app0 = b"\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x48\x00\x48\x00\x00"
    body = bytes(rng.getrandbits(8) for _ in range(rng.randrange(2000, 6000))).replace(b"\xff", b"\xfe")
    return b"\xff\xd8" + app0 + b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00" + body + b"\xff\xd9"


def pdf_bytes(text: str) -> bytes:
    """A small valid PDF (one page, one text line, FlateDecode content stream, xref table)."""
    stream = zlib.compress(f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode("latin-1", "replace"))
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out, offsets = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", []
    for i, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    return out
