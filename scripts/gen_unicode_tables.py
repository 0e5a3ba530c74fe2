"""Writes unicode_tables.h: the Unicode and HTML data the runner's tokenizers need, read off the
host tokenizers themselves, so the C++ ones give the same ids with no ICU on the board.

Every table is probed from the implementation it must agree with, not from a standard:
- CLIP BPE (edgeclip/models/tokenizer.py): the `regex` module's classes of the word pattern (its
  Unicode version is not Python's), Python's str.lower / str.isspace and its Final_Sigma context,
  unicodedata's NFC data (Python's version), html.entities and html's numeric-reference rules;
- WordPiece: the BertNormalizer and BertPreTokenizer of the Rust `tokenizers` library that
  transformers' BertTokenizer runs (its own Unicode data again).

Run `.venv/bin/python scripts/gen_unicode_tables.py` after upgrading Python, regex or
tokenizers; tests/test_device_tokenizers.py fails while the checked-in header differs.
"""

from __future__ import annotations

import html
import html.entities
import string
import sys
import unicodedata
from pathlib import Path

import regex

from edgeclip.models import tokenizer as clip_tokenizer

HEADER = Path(__file__).resolve().parents[1] / "edgeclip" / "native" / "runner" / "unicode_tables.h"
CODE_POINTS = [cp for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF]  # UTF-8 cannot carry surrogates
HANGUL = range(0xAC00, 0xD7A4)
SEPARATOR = "\u4e2d"  # a CJK ideograph: the BERT normalizer turns it into " \u4e2d "
CLASS_SPACE, CLASS_LETTER, CLASS_NUMBER, CLASS_NONE = 0, 1, 2, 3  # absent: [^\s\p{L}\p{N}]
KIND_DROP, KIND_MAP, KIND_WRAP = 0, 1, 2  # CharMap kinds (see unicode.h)


def ranges(values: dict[int, int]) -> list[tuple[int, int, int]]:
    """(first, last, value) runs of consecutive code points with one value."""
    runs: list[list[int]] = []
    for cp in sorted(values):
        if runs and runs[-1][1] == cp - 1 and runs[-1][2] == values[cp]:
            runs[-1][1] = cp
        else:
            runs.append([cp, cp, values[cp]])
    return [tuple(run) for run in runs]


def char_maps(maps: dict[int, tuple[int, int]]) -> list[tuple[int, int, int, int, int]]:
    """(first, last, delta, step, kind) runs for cp -> (kind, target): targets at a constant delta,
    code points 1 or 2 apart (upper/lower case pairs alternate); a step-2 run never hides a mapped
    code point between its members, so runs never overlap."""
    runs: list[list[int]] = []
    for cp in sorted(maps):
        kind, target = maps[cp]
        delta = target - cp
        if runs:
            first, last, run_delta, step, run_kind = runs[-1]
            same = (run_delta, run_kind) == (delta, kind)
            if same and cp - last == step:
                runs[-1][1] = cp
                continue
            if same and first == last and cp - last == 2:
                runs[-1][1], runs[-1][3] = cp, 2
                continue
        runs.append([cp, cp, delta, 1, kind])
    return [tuple(run) for run in runs]


def word_classes() -> dict[int, int]:
    """Each code point's class in CLIP's word pattern, from the regex module under the pattern's flags."""
    text = "".join(map(chr, CODE_POINTS))
    found: dict[int, int] = {}
    probes = ((CLASS_SPACE, regex.compile(r"\s")), (CLASS_LETTER, regex.compile(r"[\p{L}]", regex.IGNORECASE)),
              (CLASS_NUMBER, regex.compile(r"[\p{N}]", regex.IGNORECASE)))
    for value, pattern in probes:
        matched = {ord(m.group()) for m in pattern.finditer(text)}
        if matched & found.keys():
            raise SystemExit("a code point is in two classes of the word pattern; the tokenizer needs a new table")
        found.update(dict.fromkeys(matched, value))
    other = regex.compile(r"[^\s\p{L}\p{N}]", regex.IGNORECASE)
    rest = {ord(m.group()) for m in other.finditer(text)}
    if rest & found.keys():
        raise SystemExit("the word pattern's classes overlap; revisit the tokenizer")
    # e.g. U+0345: no letter, but its case partner is, so the negated class refuses it too
    found.update(dict.fromkeys(set(CODE_POINTS) - rest - found.keys(), CLASS_NONE))
    spaces = {cp for cp, value in found.items() if value == CLASS_SPACE}
    if spaces != {cp for cp in CODE_POINTS if clip_tokenizer._WHITESPACE.fullmatch(chr(cp))}:
        raise SystemExit("the whitespace collapse and the word pattern disagree on \\s; revisit the tokenizer")
    return found


def literal_folds() -> list[tuple[int, int]]:
    """Non-ASCII code points the pattern's literal letters match under IGNORECASE (e.g. U+017F for s)."""
    letters = sorted(set("startoftextendoftext" + "strevmld"))
    folds = []
    for letter in letters:
        pattern = regex.compile(letter, regex.IGNORECASE)
        folds += [(cp, ord(letter)) for cp in CODE_POINTS if cp >= 0x80 and pattern.fullmatch(chr(cp))]
    return sorted(folds)


def python_lower() -> tuple[dict[int, tuple[int, int]], list[tuple[int, str]]]:
    singles, multis = {}, []
    for cp in CODE_POINTS:
        lowered = chr(cp).lower()
        if lowered == chr(cp):
            continue
        if len(lowered) == 1:
            singles[cp] = (KIND_MAP, ord(lowered))
        else:
            multis.append((cp, lowered))
    return singles, multis


def sigma_context() -> dict[int, int]:
    """1: case-ignorable, 2: cased and not case-ignorable; probed through str.lower's Final_Sigma rule
    (only those two facts decide it, see unicode.h)."""
    found = {}
    for cp in CODE_POINTS:
        c = chr(cp)
        ignorable_or_cased = ("A" + c + "\u03a3").lower()[-1] == "\u03c2"
        cased_only = (c + "\u03a3").lower()[-1] == "\u03c2"
        if cased_only:
            found[cp] = 2
        elif ignorable_or_cased:
            found[cp] = 1
    return found


def nfc_data() -> tuple[list[tuple[int, int, int, int]], dict[int, int]]:
    """Canonical decompositions (one level: cp -> a [, b]; `composes` for primary composites, which NFC
    recomposes) and non-zero combining classes."""
    decompositions = []
    for cp in CODE_POINTS:
        fields = unicodedata.decomposition(chr(cp)).split()
        if not fields or fields[0].startswith("<"):
            continue
        parts = [int(f, 16) for f in fields] + [0]
        composes = len(fields) == 2 and unicodedata.normalize("NFC", chr(parts[0]) + chr(parts[1])) == chr(cp)
        decompositions.append((cp, parts[0], parts[1], int(composes)))
    classes = {cp: unicodedata.combining(chr(cp)) for cp in CODE_POINTS if unicodedata.combining(chr(cp))}
    return decompositions, classes


def hangul(cp: int) -> str:
    index = cp - 0xAC00
    jamo = chr(0x1100 + index // 588) + chr(0x1161 + index % 588 // 28)
    return jamo + (chr(0x11A7 + index % 28) if index % 28 else "")


def bert_normalized() -> dict[int, str]:
    """What the BERT normalizer turns each code point into, where that is not the code point itself."""
    from transformers import BertTokenizer

    normalizer = BertTokenizer(do_lower_case=True).backend_tokenizer.normalizer
    out = {}
    for start in range(0, len(CODE_POINTS), 4096):
        chunk = CODE_POINTS[start : start + 4096]
        parts = normalizer.normalize_str(SEPARATOR.join(map(chr, chunk)) + SEPARATOR).split(f" {SEPARATOR} ")
        if len(parts) != len(chunk) + 1:
            parts = [normalizer.normalize_str(chr(cp)) for cp in chunk]
        out.update((cp, part) for cp, part in zip(chunk, parts, strict=False) if part != chr(cp))
    return out


def bert_tables() -> tuple[dict[int, tuple[int, int]], list[tuple[int, str]], dict[int, int]]:
    from tokenizers.pre_tokenizers import BertPreTokenizer

    maps, multis = {}, []
    normalized = bert_normalized()
    for cp, text in normalized.items():
        if cp in HANGUL:
            if text != hangul(cp):
                raise SystemExit(f"the BERT normalizer maps U+{cp:04X} to {text!r}, not its jamo; revisit unicode.h")
        elif text == "":
            maps[cp] = (KIND_DROP, cp)
        elif len(text) == 1:
            maps[cp] = (KIND_MAP, ord(text))
        elif len(text) == 3 and text[0] == text[2] == " ":
            maps[cp] = (KIND_WRAP, ord(text[1]))
        else:
            multis.append((cp, text))
    pre = BertPreTokenizer()
    punct = {}
    for cp in CODE_POINTS:
        if normalized.get(cp) == "":
            continue
        words = pre.pre_tokenize_str(f"a{chr(cp)}a")
        if len(words) == 3:
            punct[cp] = 1
        elif len(words) != 1 and cp != 0x20 and cp not in normalized:
            raise SystemExit(f"the BERT pre-tokenizer splits on U+{cp:04X} the normalizer keeps; revisit wordpiece.h")
    return maps, multis, punct


def html_tables() -> tuple[list[tuple[str, str]], dict[int, int], dict[int, int]]:
    entities = sorted(html.entities.html5.items(), key=lambda kv: kv[0].encode())
    charrefs = {num: ord(text) for num, text in html._invalid_charrefs.items()}
    invalid = dict.fromkeys(html._invalid_codepoints, 1)
    return entities, charrefs, invalid


def c_string(text: str) -> str:
    """A C++ string literal of the UTF-8 bytes (a hex escape before a hex digit is closed by "")."""
    out = ""
    for byte in text.encode("utf-8"):
        if 0x20 <= byte < 0x7F and chr(byte) not in '"\\?':
            out += ('""' if out.endswith("\\x", 0, len(out) - 2) and chr(byte) in string.hexdigits else "") + chr(byte)
        else:
            out += f"\\x{byte:02x}"
    return f'"{out}"'


def array(ctype: str, name: str, rows: list[str], comment: str) -> str:
    lines, line = [], " "
    for row in rows:
        if len(line) + len(row) + 2 > 110:
            lines.append(line.rstrip())
            line = " "
        line += f" {row},"
    lines.append(line.rstrip())
    body = "\n".join(lines) if rows else ""
    return f"// {comment}\ninline constexpr {ctype} {name}[] = {{\n{body}\n}};\n"


def render() -> str:
    letters = word_classes()
    lower, lower_multi = python_lower()
    decompositions, classes = nfc_data()
    bert_maps, bert_multi, punct = bert_tables()
    entities, charrefs, invalid = html_tables()
    hexes = lambda *values: "{" + ",".join(f"0x{v:x}" if v >= 0 else str(v) for v in values) + "}"  # noqa: E731
    parts = [
        "// Generated by gen_unicode_tables.py from Python "
        f"{sys.version.split()[0]} (unicodedata {unicodedata.unidata_version}), regex {regex.__version__}, "
        "tokenizers; do not edit.\n",
        "#ifndef EDGECLIP_UNICODE_TABLES_H_\n#define EDGECLIP_UNICODE_TABLES_H_\n\n#include <cstdint>\n\n",
        "namespace edgeclip::tables {\n\n",
        "struct Range { uint32_t first, last; uint8_t value; };\n",
        "struct CharMap { uint32_t first, last; int32_t delta; uint8_t step, kind; };\n",
        "struct MultiMap { uint32_t cp; const char* utf8; };\n",
        "struct Decomposition { uint32_t cp, first, second; uint8_t composes; };\n",
        "struct Entity { const char* name; const char* utf8; };\n",
        "struct Charref { uint32_t number, cp; };\n\n",
        array("Range", "kWordClass", [hexes(*r) for r in ranges(letters)],
              "CLIP word pattern (regex module, IGNORECASE): 0 \\s, 1 [\\p{L}], 2 [\\p{N}], 3 none; absent: other"),
        array("Charref", "kLiteralFolds", [hexes(*f) for f in literal_folds()],
              "non-ASCII code points a literal letter of the pattern matches under IGNORECASE"),
        array("Range", "kPythonSpace", [hexes(*r) for r in ranges({cp: 1 for cp in CODE_POINTS if chr(cp).isspace()})],
              "str.isspace (what str.strip removes)"),
        array("CharMap", "kPythonLower", [hexes(*m) for m in char_maps(lower)], "str.lower, one code point"),
        array("MultiMap", "kPythonLowerMulti", [f"{{0x{cp:x},{c_string(t)}}}" for cp, t in lower_multi],
              "str.lower, several code points"),
        array("Range", "kSigmaContext", [hexes(*r) for r in ranges(sigma_context())],
              "Final_Sigma context of str.lower: 1 case-ignorable, 2 cased (not ignorable)"),
        array("Decomposition", "kDecompositions", [hexes(*d) for d in decompositions],
              "canonical decompositions, one level (second 0: a singleton); composes: NFC recomposes it"),
        array("Range", "kCombiningClass", [hexes(*r) for r in ranges(classes)], "canonical combining classes"),
        array("Entity", "kEntities", [f"{{{c_string(n)},{c_string(t)}}}" for n, t in entities],
              "html.entities.html5, sorted by name bytes"),
        array("Charref", "kInvalidCharrefs", [hexes(n, c) for n, c in sorted(charrefs.items())],
              "numeric references html.unescape replaces"),
        array("Range", "kInvalidCodepoints", [hexes(*r) for r in ranges(invalid)],
              "numeric references html.unescape drops"),
        array("CharMap", "kBertNormalize", [hexes(*m) for m in char_maps(bert_maps)],
              "BertNormalizer (clean text, CJK, NFD + strip Mn, lowercase): 0 drop, 1 map, 2 map and pad with spaces"),
        array("MultiMap", "kBertNormalizeMulti", [f"{{0x{cp:x},{c_string(t)}}}" for cp, t in bert_multi],
              "BertNormalizer, several code points (Hangul syllables: jamo, computed)"),
        array("Range", "kBertPunctuation", [hexes(*r) for r in ranges(punct)], "BertPreTokenizer punctuation"),
        "\n}  // namespace edgeclip::tables\n\n#endif  // EDGECLIP_UNICODE_TABLES_H_\n",
    ]
    return "".join(parts)


if __name__ == "__main__":
    HEADER.write_text(render(), encoding="utf-8")
    print(f"wrote {HEADER} ({HEADER.stat().st_size} bytes)")
