"""Strict YAML loading: every problem named with its line, and stable 4-space output."""

import pytest

from libtalos import yamlio
from libtalos.errors import ParseError


def test_lines_of_keys_are_recorded():
    doc = yamlio.load_one("a:\n    b: 1\n    c:\n        - x\n        - y\n", "f.yaml")
    assert doc.data == {"a": {"b": 1, "c": ["x", "y"]}}
    assert doc.lines[("a", "b")] == 2
    assert doc.lines[("a", "c", 1)] == 5
    assert doc.line(("a", "c", 7)) == 3  # nearest ancestor with a line
    assert doc.problem(("a", "c", 1), "bad").render() == "f.yaml:5 document 1: a.c[1]: bad"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: 1\na: 2\n", "f.yaml:2 document 1: a: duplicate key (first defined on line 1)"),
        ("a: [1, 2\n", "f.yaml:2: malformed YAML"),
        ("a: 1\n---\n---\nb: 2\n", "document 2: document is empty (null)"),
        ("", "no YAML document in the input"),
        ("a: &x {b: 1}\nc:\n    <<: *x\n", "c: merge keys (<<) are not allowed"),
        ("? [a]\n: 1\n", "keys must be strings"),
        ("a: !!python/object:os.system x\n", "unsupported tag"),
    ],
)
def test_bad_input_is_named(text, expected):
    with pytest.raises(ParseError) as info:
        yamlio.load_documents(text, "f.yaml")
    assert expected in str(info.value)


def test_all_problems_reported_at_once():
    with pytest.raises(ParseError) as info:
        yamlio.load_documents("a: 1\na: 2\nb: 1\nb: 3\n", "f.yaml")
    assert len(info.value.problems) == 2
    assert str(info.value).startswith("2 problems found")


def test_multi_document_texts_are_kept_byte_exact():
    text = "a: 1 # one\n---\nb:   2\n"
    docs = yamlio.load_documents(text)
    assert [d.index for d in docs] == [1, 2]
    assert "".join(d.text for d in docs) == text


def test_dump_is_block_style_with_4_spaces_and_no_aliases():
    shared = ["x"]
    out = yamlio.dump({"z": {"k": shared}, "a": shared, "s": "l1\nl2\n"})
    assert out == "z:\n    k:\n    - x\na:\n- x\ns: |\n    l1\n    l2\n"
    assert yamlio.load_one(out).data == {"z": {"k": ["x"]}, "a": ["x"], "s": "l1\nl2\n"}


# ------------------------------------------------------------ hostile documents (bounded)


def _bomb(levels: int) -> str:
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for i in range(1, levels):
        refs = ", ".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("levels", [6, 9])
def test_alias_bomb_is_refused_quickly(levels):
    text = _bomb(levels)
    assert len(text) < 500  # 9**levels values if expanded
    with pytest.raises(ParseError) as err:
        yamlio.load_documents(text, "bomb.yaml")
    msg = err.value.message
    assert "bomb.yaml:" in msg and "aliases expand" in msg


def test_a_few_aliases_still_load():
    """Negative control: aliases are legal YAML; ordinary reuse loads as before."""
    docs = yamlio.load_documents(_bomb(3) + "b: *a1\n", "ok.yaml")
    assert docs[0].data["b"] == [["x"] * 9] * 9
    assert len(docs[0].data["a2"]) == 9


def test_recursive_alias_is_refused():
    with pytest.raises(ParseError) as err:
        yamlio.load_documents("a: &x [1, *x]\n", "loop.yaml")
    assert "alias refers to the collection that contains it" in err.value.message


def test_deep_nesting_is_refused_with_a_message():
    with pytest.raises(ParseError) as err:
        yamlio.load_documents("[" * 500 + "]" * 500 + "\n", "deep.yaml")
    assert "nested deeper than" in err.value.message
    assert yamlio.load_documents("[" * 50 + "]" * 50 + "\n")  # control: moderate depth loads
