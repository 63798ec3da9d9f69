"""README_cn.md is a translation of README.md: the same sections in the same order, the same commands,
the same tables with the same numbers, and links that lead somewhere.

The checks parse the Markdown (outside fenced code blocks for headings, tables and links) rather than
compare text, so the prose may be worded freely in each language; what a reader copies or looks up
(commands, numbers, paths, anchors) may not drift apart. Each check is a plain function over the text,
so a failure message names the file, the line and both sides of the difference.
"""
import collections
import functools
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EN, CN = "README.md", "README_cn.md"

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)(?:\s+#+)?\s*$")
# a number as the READMEs write measurements: 0.97214, 29m45s, 1.36x, 15.74M, 1e-4, 41,728, 1101.2; ASCII only, so
# that a digit inside a name (DLA34, in1k, x0.1) is not one and a Chinese character next to a number ends it
NUMBER = re.compile(r"(?<![A-Za-z0-9_.])\d(?:[A-Za-z0-9_%]|[.,](?=[A-Za-z0-9])|(?<=[eE])[-+](?=\d))*", re.ASCII)
# [text](target) and ![alt](target); the target ends at the first space (a title may follow) or ')'
LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
EXPLICIT_ANCHOR = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"", re.IGNORECASE)
INLINE_CODE = re.compile(r"(`+)(.+?)\1")


def read(name):
    return (ROOT / name).read_text(encoding="utf-8")


def prose_lines(text):
    """(line number, line) of every line outside fenced code blocks."""
    inside = None
    for number, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if m:
            if inside is None:
                inside = m.group(1)
            elif m.group(1) == inside:
                inside = None
            continue
        if inside is None:
            yield number, line


def code_blocks(text):
    """(first line number, info string, [lines]) of every fenced code block."""
    blocks, inside, current = [], None, None
    for number, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if m and inside is None:
            inside = m.group(1)
            current = (number, line.strip()[3:].strip(), [])
            continue
        if m and m.group(1) == inside:
            blocks.append(current)
            inside = None
            continue
        if inside is not None:
            current[2].append(line)
    assert inside is None, "unclosed code block starting at line %d" % current[0]
    return blocks


@functools.lru_cache(maxsize=16)  # section_of asks for every line
def headings(text):
    """(line number, level, title) of every ATX heading outside code blocks."""
    found = []
    for number, line in prose_lines(text):
        m = HEADING.match(line)
        if m:
            found.append((number, len(m.group(1)), m.group(2)))
    return tuple(found)


def github_anchor(title):
    """The id GitHub gives a heading: its rendered text lowercased, every character that is not a letter,
    a digit (any script: Chinese characters stay), '_', '-' or a space dropped, spaces turned into '-'."""
    text = INLINE_CODE.sub(lambda m: m.group(2), title)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link in a heading renders as its text
    text = re.sub(r"<[^>]+>", "", text)
    text = text.strip().lower()
    text = "".join(ch for ch in text if ch.isalnum() or ch in "_- ")
    return text.replace(" ", "-")


def anchors(text):
    """Every id a '#...' link in this file can reach: heading ids (the n-th repeat gets '-n', as on GitHub)
    and explicit <a id=...> / <a name=...> anchors."""
    seen, ids = collections.Counter(), {}
    for index, (_, _, title) in enumerate(headings(text)):
        base = github_anchor(title)
        anchor = base if not seen[base] else "%s-%d" % (base, seen[base])
        seen[base] += 1
        ids[anchor] = index
    for _, line in prose_lines(text):
        for name in EXPLICIT_ANCHOR.findall(line):
            ids.setdefault(name.lower(), None)
    return ids


def links(text):
    """(line number, target) of every Markdown link or image outside code blocks (inline code skipped)."""
    found = []
    for number, line in prose_lines(text):
        for target in LINK.findall(INLINE_CODE.sub("", line)):
            found.append((number, target))
    return found


def commands(text):
    """The command lines of every code block: comments dropped (a '#' at the start of a line or after a
    space), whitespace runs collapsed, lines continued with '\\' joined into one command."""
    found = []
    for start, _, lines in code_blocks(text):
        pending = ""
        for offset, line in enumerate(lines, 1):
            stripped = re.sub(r"(^|\s)#.*$", "", line).strip()
            stripped = re.sub(r"\s+", " ", stripped)
            if stripped.endswith("\\"):
                pending += stripped[:-1].rstrip() + " "
                continue
            command = (pending + stripped).strip()
            pending = ""
            if command:
                found.append((start + offset, command))
        if pending.strip():
            found.append((start + len(lines), pending.strip()))
    return found


def split_row(line):
    """The cells of a table row; '\\|' is a '|' inside a cell, not a separator."""
    body = line.strip()
    if body.startswith("|"):
        body = body[1:]
    if body.endswith("|") and not body.endswith("\\|"):
        body = body[:-1]
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", body)]


def tables(text):
    """(first line number, [rows of cells]) of every pipe table outside code blocks (the |---| row kept)."""
    found, current, last = [], None, None
    for number, line in prose_lines(text):
        if line.lstrip().startswith("|") and current is not None and last == number - 1:
            current[1].append(split_row(line))
        elif line.lstrip().startswith("|"):
            current = (number, [split_row(line)])
            found.append(current)
        else:
            current = None
        last = number
    return found


def table_numbers(rows):
    return [token for row in rows for cell in row for token in NUMBER.findall(cell)]


# -- the checks, as functions of the two texts (so they can be tried on altered copies) ----------------------

def heading_differences(en, cn):
    """Empty when both files have the same heading levels in the same order; otherwise lines saying where."""
    a, b = headings(en), headings(cn)

    def show(heading, name):
        return "%s line %d: %s %s" % (name, heading[0], "#" * heading[1], heading[2]) if heading else name + ": (none)"

    problems = []
    for index in range(max(len(a), len(b))):
        left = a[index] if index < len(a) else None
        right = b[index] if index < len(b) else None
        if left is None or right is None or left[1] != right[1]:
            problems.append("heading #%d differs: %s  <->  %s" % (index + 1, show(left, EN), show(right, CN)))
            break  # after the first shift every later pair differs; the first one is what to fix
    if len(a) != len(b):
        problems.append("%s has %d headings, %s has %d" % (EN, len(a), CN, len(b)))
    return problems


def section_of(text, line):
    """Index (in heading order) and title of the section a line lies in; -1 before the first heading."""
    index, title = -1, "(before the first heading)"
    for position, (number, _, heading) in enumerate(headings(text)):
        if number > line:
            break
        index, title = position, heading
    return index, title


def command_differences(en, cn):
    """Commands are compared section by section (sections paired by position), so a command moved to
    another section counts as a difference too; if the heading counts differ, over the whole file."""
    by_section = len(headings(en)) == len(headings(cn))
    key = lambda text, line: section_of(text, line)[0] if by_section else 0
    a = [(line, key(en, line), command) for line, command in commands(en)]
    b = [(line, key(cn, line), command) for line, command in commands(cn)]
    count_a = collections.Counter((s, c) for _, s, c in a)
    count_b = collections.Counter((s, c) for _, s, c in b)
    problems = []
    for line, section, command in a:
        if count_a[section, command] > count_b[section, command]:
            problems.append("%s line %d (section '%s'), missing from that section of %s: %s"
                            % (EN, line, section_of(en, line)[1], CN, command))
            count_b[section, command] += 1
    for line, section, command in b:
        if count_b[section, command] > count_a[section, command]:
            problems.append("%s line %d (section '%s'), not in that section of %s: %s"
                            % (CN, line, section_of(cn, line)[1], EN, command))
            count_a[section, command] += 1
    return problems


def table_differences(en, cn):
    """Same tables in the same order and sections, same shape, and every number of a cell of README.md
    in the same cell of README_cn.md (cell by cell, so a number cannot hide in another row)."""
    a, b = tables(en), tables(cn)
    same_sections = len(headings(en)) == len(headings(cn))  # otherwise the heading check says what is wrong
    problems = []
    if len(a) != len(b):
        problems.append("%s has %d tables, %s has %d" % (EN, len(a), CN, len(b)))
    for index, ((line_a, rows_a), (line_b, rows_b)) in enumerate(zip(a, b), 1):
        (section_a, title_a), (section_b, title_b) = section_of(en, line_a), section_of(cn, line_b)
        if same_sections and section_a != section_b:
            problems.append("table %d: %s line %d is in section #%d '%s', %s line %d in section #%d '%s'"
                            % (index, EN, line_a, section_a + 1, title_a, CN, line_b, section_b + 1, title_b))
        shape_a = (len(rows_a), [len(r) for r in rows_a])
        shape_b = (len(rows_b), [len(r) for r in rows_b])
        if shape_a != shape_b:
            problems.append("table %d: %s line %d is %d rows x %s columns, %s line %d is %d rows x %s columns"
                            % (index, EN, line_a, shape_a[0], sorted(set(shape_a[1])), CN, line_b, shape_b[0],
                               sorted(set(shape_b[1]))))
            continue
        for row, (cells_a, cells_b) in enumerate(zip(rows_a, rows_b)):
            for column, (cell_a, cell_b) in enumerate(zip(cells_a, cells_b)):
                missing = collections.Counter(NUMBER.findall(cell_a)) - collections.Counter(NUMBER.findall(cell_b))
                if missing:
                    problems.append("table %d, %s line %d / %s line %d, column '%s': %s has %s, %s has %r"
                                    % (index, EN, line_a + row, CN, line_b + row, rows_a[0][column], EN,
                                       ", ".join(sorted(missing.elements())), CN, cell_b))
    return problems


def prose_numbers(text, by_section):
    """Number-like tokens of the prose (tables and headings aside, link targets dropped), per section."""
    found = collections.defaultdict(collections.Counter)
    for number, line in prose_lines(text):
        if line.lstrip().startswith("|") or HEADING.match(line):
            continue
        line = re.sub(r"(\]\()[^)]*\)", r"\1)", line)
        found[section_of(text, number)[0] if by_section else 0].update(NUMBER.findall(line))
    return found


def prose_number_differences(en, cn):
    """Every number README.md's prose gives in a section (measured times, ratios, accuracies, counts
    written in digits) is given in the same section of README_cn.md."""
    titles_a = headings(en)
    by_section = len(titles_a) == len(headings(cn))
    a, b = prose_numbers(en, by_section), prose_numbers(cn, by_section)
    problems = []
    for section in sorted(a):
        missing = a[section] - b[section]
        if missing:
            title = titles_a[section][2] if by_section and section >= 0 else "(whole file)"
            problems.append("section '%s': %s gives %s, %s does not"
                            % (title, EN, ", ".join(sorted(missing.elements())), CN))
    return problems


def link_problems(text, name):
    """Relative targets that do not exist in the checkout, '#anchors' that no heading of the file has."""
    ids = anchors(text)
    problems = []
    for line, target in links(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
            continue  # http:, https:, mailto:
        if target.startswith("#"):
            if target[1:].lower() not in ids:
                problems.append("%s line %d: link %s reaches no heading of %s (its headings' anchors: %s)"
                                % (name, line, target, name, ", ".join(sorted(a for a in ids))))
            continue
        path = target.split("#", 1)[0]
        if not (ROOT / path).exists():
            problems.append("%s line %d: link target %s does not exist in the checkout" % (name, line, path))
    return problems


def anchor_targets(text):
    """The heading index each '#anchor' link reaches, in the order the links appear."""
    ids = anchors(text)
    return [(line, target, ids.get(target[1:].lower())) for line, target in links(text) if target.startswith("#")]


def anchor_differences(en, cn):
    """The n-th in-page link of each file leads to the same section (by position, the files' headings
    being in the same order)."""
    a, b = anchor_targets(en), anchor_targets(cn)
    titles_a, titles_b = headings(en), headings(cn)
    if len(titles_a) != len(titles_b):
        return ["the headings differ, so sections cannot be paired: see test_same_headings_in_the_same_order"]

    def where(titles, index):
        return titles[index][2] if index is not None else "(no heading)"

    problems = []
    if len(a) != len(b):
        problems.append("%s has %d in-page links (%s), %s has %d (%s)"
                        % (EN, len(a), ", ".join(t for _, t, _ in a), CN, len(b), ", ".join(t for _, t, _ in b)))
        return problems
    for (line_a, target_a, index_a), (line_b, target_b, index_b) in zip(a, b):
        if index_a != index_b:
            problems.append("%s line %d links %s (section '%s') but %s line %d links %s (section '%s')"
                            % (EN, line_a, target_a, where(titles_a, index_a), CN, line_b, target_b,
                               where(titles_b, index_b)))
    return problems


# -- the tests on the real files --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def texts():
    return read(EN), read(CN)


def test_same_headings_in_the_same_order(texts):
    en, cn = texts
    assert headings(en), "no headings found in %s" % EN
    problems = heading_differences(en, cn)
    assert not problems, "\n".join(problems)


def test_same_commands_in_code_blocks(texts):
    en, cn = texts
    assert len(commands(en)) > 20, "the command parser found almost nothing in %s" % EN
    problems = command_differences(en, cn)
    assert not problems, "commands differ between the READMEs:\n" + "\n".join(problems)


def test_same_tables_and_numbers(texts):
    en, cn = texts
    assert len(tables(en)) > 5, "the table parser found almost nothing in %s" % EN
    problems = table_differences(en, cn)
    assert not problems, "\n".join(problems)


def test_same_numbers_in_the_prose(texts):
    en, cn = texts
    problems = prose_number_differences(en, cn)
    assert not problems, "numbers of README.md missing from README_cn.md:\n" + "\n".join(problems)


@pytest.mark.parametrize("name", [EN, CN])
def test_links_resolve(name):
    text = read(name)
    assert links(text), "no links found in %s" % name
    problems = link_problems(text, name)
    assert not problems, "\n".join(problems)


def test_in_page_links_lead_to_the_same_sections(texts):
    en, cn = texts
    problems = anchor_differences(en, cn)
    assert not problems, "\n".join(problems)


# -- the checks catch real differences (on altered copies; the files themselves are never touched) --------

def test_parsers_on_a_small_document():
    doc = ("# Title\n\n## The backend: `Global.backend: auto | paddle`\n\n```bash\n# a comment\n"
           "python a.py -c x.yaml \\\n    -o k=v   # trailing\n```\n\n| a | b \\| c |\n|---|---|\n| 1.36x | 29m45s |\n"
           "\n[x](#the-backend-globalbackend-auto--paddle) ![i](docs/images/gradcam.png)\n## 中文：标题（一）\n")
    assert [(lvl, t) for _, lvl, t in headings(doc)][0] == (1, "Title")
    assert "the-backend-globalbackend-auto--paddle" in anchors(doc)
    assert "中文标题一" in anchors(doc)
    assert [c for _, c in commands(doc)] == ["python a.py -c x.yaml -o k=v"]
    (_, rows), = tables(doc)
    assert [len(r) for r in rows] == [2, 2, 2] and rows[0][1] == "b \\| c"
    assert table_numbers(rows) == ["1.36x", "29m45s"]
    assert [t for _, t in links(doc)] == ["#the-backend-globalbackend-auto--paddle", "docs/images/gradcam.png"]
    assert link_problems(doc, "doc") == []
    assert link_problems(doc.replace("gradcam.png", "nothing.png"), "doc")


def _altered(text, old, new):
    assert old in text, "the alteration needs %r in the file" % old
    return text.replace(old, new, 1)


def test_a_missing_section_is_caught(texts):
    en, cn = texts
    first_h3 = next(line for line in cn.splitlines() if line.startswith("### "))
    problems = heading_differences(en, _altered(cn, first_h3 + "\n", "**%s**\n" % first_h3[4:]))
    assert problems and "differs" in problems[0]


def test_a_changed_command_is_caught(texts):
    en, cn = texts
    problems = command_differences(en, _altered(cn, "--calib-images 200", "--calib-images 100"))
    assert any("--calib-images 100" in p for p in problems) and any("--calib-images 200" in p for p in problems)


def test_a_changed_number_or_row_is_caught(texts):
    en, cn = texts
    table_line = next(line for line in cn.splitlines() if line.startswith("| DLA46_c |"))
    number = NUMBER.findall(table_line)[0]
    changed = table_line.replace(" %s " % number, " 9%s " % number, 1)
    problems = table_differences(en, _altered(cn, table_line, changed))
    assert any("%s has %s" % (EN, number) in p for p in problems), problems
    problems = table_differences(en, _altered(cn, table_line + "\n", ""))
    assert any("rows" in p for p in problems), problems


def test_a_number_changed_to_one_found_elsewhere_in_the_table_is_caught(texts):
    """Checking cell by cell: the old number still standing in another row does not cover for the change."""
    en, cn = texts
    lines = cn.splitlines()
    for start, rows in tables(cn):
        body = {start + offset: [t for cell in row for t in NUMBER.findall(cell)] for offset, row in enumerate(rows)
                if offset >= 2}  # after the header and the |---| row
        for line_number, tokens in body.items():
            others = [t for n, ts in body.items() if n != line_number for t in ts if t not in tokens]
            if tokens and others:
                pattern = r"(?<![A-Za-z0-9_.])%s(?![A-Za-z0-9_])" % re.escape(tokens[0])
                changed = re.sub(pattern, others[0], lines[line_number - 1], count=1)
                problems = table_differences(en, _altered(cn, lines[line_number - 1], changed))
                assert any("%s has %s" % (EN, tokens[0]) in p for p in problems), (changed, problems)
                return
    pytest.fail("no table of %s has two rows with different numbers" % CN)


def test_a_changed_measurement_in_the_prose_is_caught(texts):
    en, cn = texts
    section, title = next((i, h[2]) for i, h in enumerate(headings(en)) if prose_numbers(en, True)[i])
    token = sorted(prose_numbers(en, True)[section])[0]
    start = headings(cn)[section][0]
    lines = cn.splitlines()
    index = next(n for n in range(start, len(lines))
                 if token in NUMBER.findall(lines[n]) and not lines[n].lstrip().startswith("|"))
    lines[index] = re.sub(r"(?<![A-Za-z0-9_.])%s(?![A-Za-z0-9_])" % re.escape(token), "9" + token, lines[index])
    problems = prose_number_differences(en, "\n".join(lines))
    assert any(token in p and (title in p or "(whole file)" in p) for p in problems), problems


def test_a_dead_link_is_caught(texts):
    _, cn = texts
    first_anchor = next(t for _, t in links(cn) if t.startswith("#"))
    broken = _altered(cn, "](%s)" % first_anchor, "](%s-gone)" % first_anchor)
    assert any("reaches no heading" in p for p in link_problems(broken, CN))
    broken = _altered(cn, "](docs/images/", "](docs/pictures/")
    assert any("does not exist" in p for p in link_problems(broken, CN))
