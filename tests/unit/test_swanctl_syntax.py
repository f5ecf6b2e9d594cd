"""erebus.ipsec.swanctl_syntax alone: swanctl.conf text into sections and settings."""

from __future__ import annotations

import textwrap

import pytest
from hypothesis import given, settings, strategies as st

from erebus.errors import ConfigError
from erebus.ipsec.swanctl_syntax import parse


def tree(text: str, path: str = "/nowhere/swanctl.conf"):
    return parse(path, textwrap.dedent(text).lstrip("\n"))


def test_sections_settings_and_their_lines():
    root = tree("""
        # a comment
        connections {
            home
            {
                version = 2   # the rest of the line is a comment
                remote_addrs = vpn.example.org
            }
        }
        """)
    home = root.sections["connections"].sections["home"]
    assert (home.line, home.path) == (3, "/nowhere/swanctl.conf")
    version = home.settings["version"]
    assert (version.value, version.line) == ("2", 5)
    assert home.settings["remote_addrs"].value == "vpn.example.org"


def test_values_join_their_parts_and_quotes_keep_spaces_and_escapes():
    root = tree(r'''
        a = one   two	three
        b = "x  y" z
        c = "tab\there\nnewline \"quoted\" \q"
        d = "joined \
        line"
        e =
        s { f = x}
        ''')
    s = root.settings
    assert s["a"].value == "one two three"
    assert s["b"].value == "x  y z"
    assert s["c"].value == 'tab\there\nnewline "quoted" q'
    assert s["d"].value == "joined line"
    assert s["e"].value is None
    assert root.sections["s"].settings["f"].value == "x"    # a '}' ends the value


def test_a_section_given_twice_is_merged_and_the_last_key_wins():
    root = tree("""
        s { a = 1
            t { x = 1 } }
        s { a = 2
            b = 3
            t { y = 2 } }
        """)
    s = root.sections["s"]
    assert {k: v.value for k, v in s.settings.items()} == {"a": "2", "b": "3"}
    assert set(s.sections["t"].settings) == {"x", "y"}


def test_includes_are_read_in_place_in_sorted_order(tmp_path):
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "b.conf").write_text("b = 2\nlast = b\n")
    (tmp_path / "conf.d" / "a.conf").write_text("a = 1\nlast = a\n")
    (tmp_path / "one word.conf").write_text("spaced = yes\n")
    main = tmp_path / "swanctl.conf"
    main.write_text('include conf.d/*.conf\ninclude "one word.conf"\ninclude none/*.conf\n')
    s = parse(str(main)).settings
    assert {k: v.value for k, v in s.items()} == {"a": "1", "b": "2", "last": "b",
                                                  "spaced": "yes"}
    assert (s["a"].path, s["a"].line) == (str(tmp_path / "conf.d" / "a.conf"), 1)


def test_a_missing_include_names_the_line_that_includes_it(tmp_path):
    main = tmp_path / "swanctl.conf"
    main.write_text("a = 1\ninclude missing.conf\n")
    with pytest.raises(ConfigError, match=r"swanctl.conf:2: include: included file .* "
                                          "does not exist"):
        parse(str(main))


def test_includes_nest_at_most_ten_deep(tmp_path):
    (tmp_path / "loop.conf").write_text("include loop.conf\n")
    with pytest.raises(ConfigError, match="nested deeper than 10 levels"):
        parse(str(tmp_path / "loop.conf"))


@pytest.mark.parametrize("text, line, message", [
    ('a = "open\n\n', 1, "unterminated string"),
    ("}\n", 1, "'}' without a section to close"),
    ("s {\n a = 1\n", 1, "section 's' is never closed"),
    ("s : base {\n}\n", 1, "section references"),
    ("\nname\n", 3, "'=' or '{' expected after 'name', found the end of the file"),
    ('"quoted" = 1\n', 1, "unexpected quoted string"),
    ("= 1\n", 1, "unexpected '='"),
])
def test_what_does_not_parse_names_its_line(text, line, message):
    with pytest.raises(ConfigError, match=message) as info:
        parse("/nowhere/swanctl.conf", text)
    assert (info.value.path, info.value.line) == ("/nowhere/swanctl.conf", line)


_WORDS = st.sampled_from(["connections", "home", "a", "=", "{", "}", "\n", " ", "\t", "#",
                          '"', "\\", ":", "x y", "\r\n", "=\n", "\\\n", "é", "\0"])


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=300), st.lists(_WORDS, max_size=60).map("".join)))
def test_any_text_gives_a_tree_or_a_config_error(text):
    if "include" in text:
        return                                   # no file system here
    try:
        parse("/nowhere/swanctl.conf", text)
    except ConfigError as exc:
        assert exc.path is not None and exc.line is not None
