"""Domain rules and the remix plan: classification, user rules, deterministic sampling toward a target."""

from __future__ import annotations

import collections

import pytest

from dsllm.curation.remix import DomainClassifier, DomainRemixer, RemixConfig
from dsllm.config import from_dict, load_config
from dsllm.errors import UserError


@pytest.fixture(scope="module")
def classifier():
    return DomainClassifier.from_config(RemixConfig())


@pytest.mark.parametrize("url,domain", [
    ("https://en.wikipedia.org/wiki/Ray_tracing", "encyclopedia"),
    ("https://baike.baidu.com/item/%E9%95%BF%E6%B1%9F", "encyclopedia"),
    ("https://arxiv.org/abs/2401.02954", "academic"),
    ("http://www.cs.stanford.edu/people/x", "academic"),
    ("https://kns.cnki.net/kcms/detail", "academic"),
    ("https://www.ox.ac.uk/research", "academic"),
    ("https://www.nasa.gov/missions", "government"),
    ("http://www.beijing.gov.cn/zhengce/", "government"),
    ("https://www.bbc.co.uk/news/world-123", "news"),
    ("http://www.xinhuanet.com/politics/2024-01/01/c_1.htm", "news"),
    ("https://news.sina.com.cn/c/2024-01-01/doc.shtml", "news"),
    ("https://example.com/2021/03/04/some-story", "news"),
    ("https://stackoverflow.com/questions/11227809", "forum_qa"),
    ("https://www.zhihu.com/question/123", "forum_qa"),
    ("https://tieba.baidu.com/p/1", "forum_qa"),
    ("https://forum.example.org/t/hello", "forum_qa"),
    ("https://docs.python.org/3/library/re.html", "tech"),
    ("https://blog.csdn.net/u/article/details/1", "tech"),
    ("https://github.com/ray-project/ray", "tech"),
    ("https://www.gutenberg.org/ebooks/100", "books"),
    ("https://www.qidian.com/book/1", "books"),
    ("https://item.jd.com/100012043978.html", "commerce"),
    ("https://www.amazon.com/dp/B000", "commerce"),
    ("https://some-random-blog.net/my-cat", "other_web"),
    ("", "other_web"),
    ("not a url at all", "other_web"),
    ("http://[bad", "other_web"),
])
def test_shipped_rules(classifier, url, domain):
    assert classifier.domain(url) == domain


def test_user_rules_extend_and_override(tmp_path):
    user = tmp_path / "my-domains.toml"
    user.write_text('[domains.encyclopedia]\nhosts = ["mywiki.example"]\n'
                    '[domains.tech]\nhosts = ["wikipedia.org"]\n'
                    '[domains.recipes]\nhosts = ["allrecipes.com"]\npath_patterns = ["^/recipe/"]\n')
    c = DomainClassifier.from_config(RemixConfig(extra_rules=str(user)))
    assert c.domain("https://mywiki.example/x") == "encyclopedia"
    assert c.domain("https://en.wikipedia.org/wiki/X") == "tech"       # the user's host wins
    assert c.domain("https://cooking.example/recipe/1") == "recipes"
    assert c.domain("https://www.allrecipes.com/") == "recipes"
    assert "recipes" in c.domains


def test_bad_pattern_is_a_user_error(tmp_path):
    user = tmp_path / "bad.toml"
    user.write_text('[domains.x]\npath_patterns = ["(unclosed"]\n')
    with pytest.raises(UserError, match="bad pattern"):
        DomainClassifier.from_config(RemixConfig(extra_rules=str(user)))


def test_shipped_remix_config_loads():
    cfg = load_config(RemixConfig, "remix.toml")
    assert cfg == RemixConfig()
    with pytest.raises(UserError):
        from_dict(RemixConfig, {"by": "tokens"})
    with pytest.raises(UserError):
        from_dict(RemixConfig, {"target": {"news": -1}})


NATURAL = {"encyclopedia": {"documents": 1000, "chars": 4_000_000},
           "news": {"documents": 3000, "chars": 6_000_000},
           "other_web": {"documents": 20000, "chars": 30_000_000},
           "weird": {"documents": 100, "chars": 200_000}}


def test_plan_moves_toward_target_and_keeps_size():
    cfg = RemixConfig(target={"encyclopedia": 0.3, "news": 0.2, "other_web": 0.5}, max_repeat=10)
    plan = DomainRemixer(cfg).plan(NATURAL)
    total = sum(c["chars"] for c in NATURAL.values())
    remixed = {d: NATURAL[d]["chars"] * f for d, f in plan.factors.items()}
    assert sum(remixed.values()) == pytest.approx(total, rel=1e-9)
    share = {d: v / total for d, v in remixed.items()}
    assert share["weird"] == pytest.approx(200_000 / total)            # unlisted keeps its share
    assert share["encyclopedia"] / share["news"] == pytest.approx(0.3 / 0.2)
    assert plan.factors["encyclopedia"] > 1 > plan.factors["other_web"]


def test_repeats_are_deterministic_and_realize_the_factors():
    cfg = RemixConfig(target={"encyclopedia": 0.3, "news": 0.2, "other_web": 0.5}, max_repeat=4, by="documents")
    plan = DomainRemixer(cfg).plan(NATURAL)
    assert plan.factors["encyclopedia"] == 4.0                          # capped
    counts = collections.Counter()
    for d in ("encyclopedia", "news", "other_web"):
        n = 4000
        k = [plan.repeats(f"{d}-{i}", d) for i in range(n)]
        assert k == [plan.repeats(f"{d}-{i}", d) for i in range(n)]      # deterministic
        counts[d] = sum(k) / n
        f = plan.factors[d]
        assert set(k) <= {int(f), int(f) + 1}
        assert counts[d] == pytest.approx(f, abs=0.05)
    other_seed = DomainRemixer(RemixConfig(target=cfg.target, seed=1, by="documents")).plan(NATURAL)
    assert [plan.repeats(f"x{i}", "news") for i in range(200)] != [other_seed.repeats(f"x{i}", "news") for i in range(200)]
    assert plan.repeats("anything", "unknown-domain") == 1
    assert plan.to_json()["factors"]["news"] == plan.factors["news"]


def test_empty_and_absent_target_domains():
    assert DomainRemixer(RemixConfig()).plan({}).factors == {}
    plan = DomainRemixer(RemixConfig(target={"books": 1.0})).plan({"news": {"documents": 5, "chars": 50}})
    assert plan.factors == {"news": 1.0}                                 # books absent: nothing to raise
