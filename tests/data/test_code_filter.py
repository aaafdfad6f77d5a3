import collections

from codemix.data import code_filter
from codemix.data.corpus import Doc
from codemix.data.families.text import drop_code

PROSE = """The committee met on Tuesday to discuss the budget for the coming year.
Several members argued that the new library should be funded first; others
preferred repairs to the bridge. After a long debate (and two recesses) the
vote was postponed until the spring session."""

PYTHON = """import os

def walk(root):
    for dirpath, dirnames, filenames in os.walk(root):
        if not filenames:
            continue
        yield dirpath, sorted(filenames)
"""

C = """#include <stdio.h>
int main(void) {
    int total = 0;
    for (int i = 0; i < 10; i++) {
        total += i;
    }
    printf("%d\\n", total);
    return 0;
}
"""

ARTICLE_WITH_SNIPPET = PROSE + "\n\nFor example, one can write:\n\n    x = 1\n\n" + PROSE + "\n" + PROSE


def test_prose_is_not_code():
    assert code_filter.code_fraction(PROSE) < 0.1
    assert not code_filter.is_mostly_code(PROSE)


def test_python_and_c_are_mostly_code():
    assert code_filter.is_mostly_code(PYTHON)
    assert code_filter.is_mostly_code(C)


def test_article_with_a_small_snippet_is_kept():
    assert not code_filter.is_mostly_code(ARTICLE_WITH_SNIPPET)


def test_text_family_drops_code_documents_and_counts_them():
    docs = [Doc(t, "text", "test==0", f"d{i}", "en") for i, t in enumerate([PROSE, PYTHON, C, ARTICLE_WITH_SNIPPET])]
    counts = collections.Counter()
    kept = list(drop_code(iter(docs), counts))
    assert [d.path for d in kept] == ["d0", "d3"]
    assert counts["code_detector"] == 2
