"""The stage contract (curation/stage.py): a new stage is one class; counts balance; batches are
what the stage asks for; events land in the counts of the call that produced them."""

from __future__ import annotations

import re

from dsllm.curation.document import Document
from dsllm.curation.filters.pii import PiiMasker
from dsllm.curation.stage import Stage, StageCounts


class EvenLength(Stage):
    """A stage written the way a new one would be: judge batches of three."""

    name = "even_length"
    batch_size = 3

    def __init__(self):
        self.seen: list[int] = []

    def judge(self, batch):
        self.seen.append(len(batch))
        return [None if len(d.text) % 2 == 0 else "odd_length" for d in batch]


def test_a_new_stage_is_one_class():
    texts = ["ab", "abc", "", "abcd", "x", "xyz", "hello!", "ok"]
    stage, counts = EvenLength(), StageCounts("even_length")
    kept = [d.text for d in stage((Document(str(i), t) for i, t in enumerate(texts)), counts)]
    assert kept == [t for t in texts if len(t) % 2 == 0]
    assert stage.seen == [3, 3, 2]
    assert counts.n_in == len(texts) and counts.n_out == len(kept) and counts.balanced()
    assert dict(counts.dropped) == {"odd_length": sum(len(t) % 2 for t in texts)}


def test_events_go_to_the_counts_of_their_own_call():
    texts = [["write to a@b.example or c@d.example", "nothing here"], ["e@f.example", "g@h.example x@y.example"]]
    stage = PiiMasker()
    per_call = []
    for group in texts:
        counts = StageCounts("pii")
        list(stage((Document(str(i), t) for i, t in enumerate(group)), counts))
        per_call.append(counts.events["email"])
        assert counts.balanced() and counts.n_out == len(group)
    assert per_call == [sum(len(re.findall(r"@", t)) for t in group) for group in texts]
    assert stage.events["email"] == sum(per_call)  # the stage's own tally spans its calls
