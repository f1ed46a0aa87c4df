"""Recall floors on a slice of both development sets, with the real default embedder.

One LoCoMo conversation (person-to-person) and one BEAM chat (user-assistant) are ingested as the
benchmarks do (bench/locomo.py, bench/beam.py) and every question searched three ways: the default
ranking, dense search alone and keyword search alone. The build fails when the default's
recall_all@10 falls below its floor on either kind of conversation, or when it no longer beats the
better single signal on both, so a ranking change that helps one kind of dialogue and hurts the
other cannot land. The floors sit a few points under the figures measured when they were set (in
the comments), to absorb embedder arithmetic differing across CPUs, not ranking changes.

The data is third-party and not in the repository: it is read from ../shared/data (or
$MEMLANE_BENCH_DATA); without it these tests are skipped, saying so.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from memlane import Memory

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import beam  # noqa: E402
import locomo  # noqa: E402
from _retrieval import ABLATIONS, KS, Tally  # noqa: E402

DATA = Path(os.environ.get("MEMLANE_BENCH_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
LOCOMO_CONVERSATION = "30.json"  # the smallest of the five
BEAM_CHAT = "6"  # 1,024 messages, 1.3M characters: the cheapest to embed
CONFIGS = [("default", None), *[(label, r) for label, r in ABLATIONS if label in ("dense only", "keyword only")]]

# Floors for the default's recall_all@10. Measured when set (2026-12-04): LoCoMo 30, 81 questions:
# default 70.4, dense only 44.4, keyword only 64.2; BEAM 6, 18 questions: default 44.4, dense only
# 22.2, keyword only 22.2. Each floor allows about three LoCoMo questions or one BEAM question less.
LOCOMO_FLOOR = 66.0
BEAM_FLOOR = 38.0

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (DATA / "locomo-dev" / LOCOMO_CONVERSATION).is_file() or not (DATA / "beam-dev" / BEAM_CHAT).is_dir(),
        reason=f"benchmark data not found under {DATA} (set MEMLANE_BENCH_DATA to the folder holding "
        "locomo-dev/ and beam-dev/)",
    ),
]

Questions = list[tuple[str, str, set[str]]]  # (question, scope, gold memory ids)


def _recall(path: Path, questions: Questions, ranking: dict[str, Any] | None) -> float:
    tally = Tally()
    with Memory(path=path, config={"ranking": ranking} if ranking else {}) as mem:
        for question, scope, gold in questions:
            tally.ask(lambda q=question, s=scope: mem.search(q, user_id=s, limit=max(KS))["results"], gold, "all")
    recall: float = tally.summary("")["recall_all"][10]
    return recall


@pytest.fixture(scope="module")
def locomo_slice(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Questions]]:
    path = tmp_path_factory.mktemp("recall") / "locomo.db"
    f = DATA / "locomo-dev" / LOCOMO_CONVERSATION
    convs = [(f"locomo-{f.stem}", json.loads(f.read_text()))]
    ids = locomo.open_store(path, convs, Tally())
    questions: Questions = []
    for scope, conv in convs:
        for qa in conv["qa"]:
            gold = locomo.evidence_ids(qa)
            if qa.get("category") in locomo.CATEGORIES and gold and all(g in ids[scope] for g in gold):
                questions.append((str(qa["question"]), scope, {ids[scope][g] for g in gold}))
    yield path, questions


@pytest.fixture(scope="module")
def beam_slice(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Questions]]:
    path = tmp_path_factory.mktemp("recall") / "beam.db"
    chat_dir = DATA / "beam-dev" / BEAM_CHAT
    ids = beam.open_store(path, [chat_dir], Tally())
    scope = f"beam-{chat_dir.name}"
    questions: Questions = [
        (question, scope, {ids[scope][g] for g in gold})
        for _, question, gold, _ in beam.load_questions(chat_dir)
        if all(g in ids[scope] for g in gold)
    ]
    yield path, questions


@pytest.mark.parametrize(
    ("dataset", "floor"), [("locomo_slice", LOCOMO_FLOOR), ("beam_slice", BEAM_FLOOR)], ids=["locomo", "beam"]
)
def test_default_recall_holds_and_beats_each_signal(
    dataset: str, floor: float, request: pytest.FixtureRequest, record_property: Callable[[str, object], None]
) -> None:
    path, questions = request.getfixturevalue(dataset)
    assert len(questions) >= 15, "the slice lost its questions: check the loader against the data format"
    recall = {label: _recall(path, questions, ranking) for label, ranking in CONFIGS}
    record_property("recall_all@10", recall)
    print(f"{dataset}: {len(questions)} questions, recall_all@10 {recall}")
    assert recall["default"] >= floor, f"default recall_all@10 {recall['default']} fell below its floor {floor}"
    best_single = max(recall["dense only"], recall["keyword only"])
    assert recall["default"] > best_single, f"the fusion no longer beats its best single signal: {recall}"
