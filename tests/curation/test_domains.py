"""Domain rules: classification, user rules; an old [remix] config points at `dsllm mix`."""

from __future__ import annotations

import pytest

from dsllm.curation.domains import DomainClassifier, DomainsConfig
from dsllm.errors import UserError


@pytest.fixture(scope="module")
def classifier():
    return DomainClassifier.from_config(DomainsConfig())


@pytest.mark.parametrize(
    "url,domain",
    [
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
    ],
)
def test_shipped_rules(classifier, url, domain):
    assert classifier.domain(url) == domain


def test_user_rules_extend_and_override(tmp_path):
    user = tmp_path / "my-domains.toml"
    user.write_text(
        '[domains.encyclopedia]\nhosts = ["mywiki.example"]\n'
        '[domains.tech]\nhosts = ["wikipedia.org"]\n'
        '[domains.recipes]\nhosts = ["allrecipes.com"]\npath_patterns = ["^/recipe/"]\n'
    )
    c = DomainClassifier.from_config(DomainsConfig(extra_rules=str(user)))
    assert c.domain("https://mywiki.example/x") == "encyclopedia"
    assert c.domain("https://en.wikipedia.org/wiki/X") == "tech"  # the user's host wins
    assert c.domain("https://cooking.example/recipe/1") == "recipes"
    assert c.domain("https://www.allrecipes.com/") == "recipes"
    assert "recipes" in c.domains


def test_bad_pattern_is_a_user_error(tmp_path):
    user = tmp_path / "bad.toml"
    user.write_text('[domains.x]\npath_patterns = ["(unclosed"]\n')
    with pytest.raises(UserError, match="bad pattern"):
        DomainClassifier.from_config(DomainsConfig(extra_rules=str(user)))


def test_old_remix_config_is_one_line_pointing_at_dsllm_mix(tmp_path):
    """A config written for the old curate-time remix gets one clear error, as does --skip remix."""
    from dsllm.curation.config import CurateConfig, load_curate_config
    from dsllm.curation.pipeline import replace_skip

    old = tmp_path / "old.toml"
    old.write_text("[remix]\nmax_repeat = 4\n\n[remix.target]\nnews = 0.3\n")
    for path, sets in ((str(old), []), (None, ["remix.target.news=0.3"])):
        with pytest.raises(UserError, match="dsllm mix") as err:
            load_curate_config(path, sets)
        assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="dsllm mix"):
        replace_skip(CurateConfig(), ["remix"])
    assert load_curate_config(None, ['domains.extra_rules="x.toml"']).domains.extra_rules == "x.toml"
