"""Docker's word expansion: a table built from buildkit's lexer vectors, word splitting, the
lexer's options, and properties (only InvalidArgument escapes; quoting round-trips)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lamina import errdefs
from lamina.dockerfile.lexer import is_go_space
from lamina.dockerfile.substitution import (EXPANDED_INSTRUCTIONS, WORD_SPLIT_INSTRUCTIONS, ShellWords,
                                           Substitution, environment_from_list)

ENV = {"PWD": "/home", "SHELL": "bash", "KOREAN": "한국어", "NULL": ""}
ERROR = object()

# (id, input, expected) with ENV above; ERROR means InvalidArgument.
EXPANSIONS = [
    ("a plain word is unchanged", "hello", "hello"),
    ("single quotes in a word are removed", "he'll'o", "hello"),
    ("an unterminated single quote is an error", "he'llo", ERROR),
    ("an escaped single quote is literal", "he\\'llo", "he'llo"),
    ("an escaped escape then a quote opens a quote", "he\\\\'llo", ERROR),
    ("an escaped letter loses the escape", "abc\\tdef", "abctdef"),
    ("an escape before t in double quotes stays", '"abc\\tdef"', "abc\\tdef"),
    ("an escaped escape in double quotes is one backslash", '"abc\\\\tdef"', "abc\\tdef"),
    ("single quotes keep escapes", "'abc\\tdef'", "abc\\tdef"),
    ("a trailing escape vanishes", "hello\\", "hello"),
    ("an escaped trailing escape stays", "hello\\\\", "hello\\"),
    ("an unterminated double quote is an error", '"hello', ERROR),
    ("an escaped closing double quote leaves it open", '"hello\\"', ERROR),
    ("a single quote inside double quotes is literal", "\"hel'lo\"", "hel'lo"),
    ("a backslash before the closing single quote is literal", "'hello\\'", "hello\\"),
    ("two single quotes inside double quotes stay", "\"''\"", "''"),
    ("a dollar before a non-name stays", "$.", "$."),
    ("positional parameters are empty", "he$1x", "hex"),
    ("a dollar then a dot stays in a word", "he$.x", "he$.x"),
    ("names are case-sensitive", "he$pwd.", "he."),
    ("a variable is replaced", "he$PWD", "he/home"),
    ("an escaped dollar is literal", "he\\$PWD", "he$PWD"),
    ("an escaped escape before a variable", "he\\\\$PWD", "he\\/home"),
    ("an escaped dollar in double quotes is literal", '"he\\$PWD"', "he$PWD"),
    ("escaped braces stay literal", "\\${}", "${}"),
    ("an empty substitution is an error", "${}", ERROR),
    ("a name that is not one is an error", "he${.}", ERROR),
    ("braces around an unset name give nothing", "he${hi}xx", "hexx"),
    ("braces around a set name", "he${PWD}", "he/home"),
    ("default for an unset name", "he${XXX:-000}xx", "he000xx"),
    ("no default for a set name", "he${PWD:-000}xx", "he/homexx"),
    ("the default is expanded", "he${XXX:-$PWD}xx", "he/homexx"),
    ("defaults nest", "he${XXX:-${YYY:-yyy}}xx", "heyyyxx"),
    ("colon then a letter is an unsupported modifier", "he${XXX:YYY}", ERROR),
    ("question mark on an unset name is an error", "he${XXX?}", ERROR),
    ("question mark on a set name gives it", "he${PWD?}", "he/home"),
    ("question mark without colon accepts empty", "he${NULL?}", "he"),
    ("colon question mark rejects empty", "he${NULL:?}", ERROR),
    ("plus on an unset name gives nothing", "he${XXX:+${PWD}}xx", "hexx"),
    ("plus on a set name gives the word", "he${PWD:+${SHELL}}xx", "hebashxx"),
    ("single quotes stop expansion", "'he${XX}'", "he${XX}"),
    ("double quotes expand", '"he${PWD}"', "he/home"),
    ("single quotes inside double quotes expand", "\"he'$PWD'\"", "he'/home'"),
    ("an unterminated brace is an error", "he${PWD", ERROR),
    ("assignment is not supported", "he${PWD:=000}xx", ERROR),
    ("a colon inside the word", "he${PWD:+${PWD}:}xx", "he/home:xx"),
    ("an escaped dollar in a default", "he${XXX:-\\$PWD:}xx", "he$PWD:xx"),
    ("an escaped dollar brace in a default", "he${XXX:-\\${PWD}z}xx", "he${PWDz}xx"),
    ("non-ascii text is kept", "안'녕'하세요", "안녕하세요"),
    ("non-ascii values", "안녕$KOREAN", "안녕한국어"),
    ("a double opening brace is an error", "${{aaa}", ERROR),
    ("a closing brace after a substitution is literal", "${aaa}}", "}"),
    ("an unterminated default is an error", "${aaa:-bbb", ERROR),
    ("a closing brace after a default", "${aaa:-bbb}}", "bbb}"),
    ("a nested unterminated default is an error", "${aaa:-bbb ${foo}", ERROR),
    ("an opening brace in a default is literal", "${aaa:-bbb {foo}", "bbb {foo"),
    ("a colon with no name is an error", "${:-bbb}", ERROR),
    ("numeric names are positional", "${999:-bbb}aaa", "bbbaaa"),
    ("leading zeros are digits too", "$001aaa", "aaa"),
    ("special parameters are never set", "$@@@", "@@"),
    ("two dollars are the pid parameter, empty", "$$", ""),
    ("the default of a special parameter", "${#:-bbb}", "bbb"),
    ("shortest prefix removal", "${PWD#*/}", "home"),
    ("longest suffix removal", "${KOREAN%%국*}", "한"),
    ("replace the first match", "${SHELL/a/A}", "bAsh"),
    ("replace every match", "${PWD//o/0}", "/h0me"),
    ("two dollars in a replacement are the empty pid parameter", "${SHELL//a/<$$0>}", "b<0>sh"),
    ("a replacement referring to the whole match keeps raw escapes", "${SHELL//a/<\\$0>}",
     "b<\\a>sh"),
    ("colon with a hash is unsupported", "${PWD:#x}", ERROR),
    ("a missing slash in a replacement is an error", "${PWD/abc", ERROR),
]


@pytest.mark.parametrize("text,expected", [case[1:] for case in EXPANSIONS],
                         ids=[case[0] for case in EXPANSIONS])
def test_expansion_table(text: str, expected: object) -> None:
    lexer = ShellWords()
    if expected is ERROR:
        with pytest.raises(errdefs.InvalidArgument, match="failed to process"):
            lexer.process_word(text, ENV)
    else:
        assert lexer.process_word(text, ENV) == expected


WORD_ENV = {"hi": "hi", "space": "abc  def", "leading": "  ab c", "trailing": "ab c   "}
WORDS = [
    ("a variable set later splits nothing", "hello${hi}bye", ["hellohibye"]),
    ("spaces in a value split words", "hello${space}bye", ["helloabc", "defbye"]),
    ("quotes keep a value in one word", 'hello"${space}"bye', ["helloabc  defbye"]),
    ("a space before quotes separates", 'hello "${space}"bye', ["hello", "abc  defbye"]),
    ("a leading space in a value ends the word", "hello${leading}def", ["hello", "ab", "cdef"]),
    ("trailing spaces end the word", "hello${trailing}d", ["helloab", "c", "d"]),
    ("quoted trailing spaces stay", 'hel"lo${trailing}"', ["helloab c   "]),
    ("plain words split", "hello there  ", ["hello", "there"]),
    ("an escaped space joins", "hello\\ there", ["hello there"]),
    ("an escaped quote is a character", 'hello\\" there', ['hello"', "there"]),
    ("empty quotes make no word", '"" a', ["a"]),
    ("a default with a prefix stays one word", "hello${x:-a}b", ["helloab"]),
]


@pytest.mark.parametrize("text,expected", [case[1:] for case in WORDS], ids=[case[0] for case in WORDS])
def test_word_splitting_table(text: str, expected: list[str]) -> None:
    assert ShellWords().process_words(text, WORD_ENV) == expected


def test_backtick_escape_makes_backslash_ordinary() -> None:
    lexer = ShellWords("`")
    assert lexer.process_word("c:\\path\\$A", {"A": "x"}) == "c:\\path\\x"
    assert lexer.process_word("a`$A", {"A": "x"}) == "a$A"
    assert lexer.process_word('"a`"b"', {}) == 'a"b'


def test_invalid_escape_character_is_refused() -> None:
    with pytest.raises(errdefs.InvalidArgument, match="invalid escape token"):
        ShellWords("x")


def test_skip_unset_env_keeps_references_as_written() -> None:
    lexer = ShellWords(skip_unset_env=True)
    assert lexer.process_word("$A ${B} ${C:-d} $SET", {"SET": "1"}) == "$A ${B} ${C:-d} 1"


def test_raw_quotes_and_escapes_keep_their_characters() -> None:
    lexer = ShellWords(raw_quotes=True, raw_escapes=True)
    assert lexer.process_word("'a b' \"c\\$\" d\\ e", {}) == "'a b' \"c\\$\" d\\ e"


def test_heredoc_markers_stay_one_word() -> None:
    assert ShellWords().process_words("cat << EOF > out", {}) == ["cat", "<< EOF", ">", "out"]


def test_matched_and_unmatched_names_are_reported() -> None:
    result = ShellWords().process("$A ${B:-x} $C", {"A": "1", "C": ""})
    assert result.matched == {"A", "C"}
    assert result.unmatched == {"B"}


def test_error_message_quotes_the_word() -> None:
    with pytest.raises(errdefs.InvalidArgument) as info:
        ShellWords().process_word("${A:", {})
    assert str(info.value) == "failed to process \"${A:\": syntax error: missing '}'"


def test_text_ending_after_the_name_is_an_unsupported_modifier_like_go() -> None:
    # buildkit's processDollar reads scanner.EOF as the modifier and prints it as U+FFFD.
    with pytest.raises(errdefs.InvalidArgument) as info:
        ShellWords().process_word("${A", {})
    assert str(info.value) == "failed to process \"${A\": unsupported modifier (\ufffd) in substitution"


def test_required_variable_message() -> None:
    with pytest.raises(errdefs.InvalidArgument, match="A: is not allowed to be unset"):
        ShellWords().process_word("${A?}", {})
    with pytest.raises(errdefs.InvalidArgument, match="A: set it please"):
        ShellWords().process_word("${A:?set it please}", {"A": ""})


def test_the_instruction_sets_are_dockers() -> None:
    assert EXPANDED_INSTRUCTIONS == {"add", "arg", "copy", "env", "expose", "from", "label",
                                     "stopsignal", "user", "volume", "workdir"}
    assert WORD_SPLIT_INSTRUCTIONS == {"expose"}
    assert not {"run", "cmd", "entrypoint", "shell", "healthcheck", "onbuild"} & EXPANDED_INSTRUCTIONS


def test_environment_list_later_entries_win() -> None:
    assert environment_from_list(["A=1", "B=x=y", "A=2", "C"]) == {"A": "2", "B": "x=y", "C": ""}


def test_go_space_excludes_ascii_separators() -> None:
    assert is_go_space(" ") and is_go_space("\u00a0") and is_go_space("\u0085")
    assert not is_go_space("\x1c") and not is_go_space("a")


def test_substitution_heredoc_keeps_quotes() -> None:
    substitution = Substitution({"A": "x"}, "`")
    assert substitution.heredoc("'$A' \"\\$A\"") == "'x' \"$A\""
    assert substitution.word("'$A'") == "$A"
    assert substitution.words("$A `$A") == ["x", "$A"]


# -- properties ----------------------------------------------------------------------------

TEXT = st.text(alphabet=st.sampled_from(list("ab $\\'\"{}:-+?#%/*`<\t") + ["é", "0", "_"]),
               max_size=40)
NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,5}", fullmatch=True)


@settings(max_examples=400, deadline=None)
@given(TEXT, st.dictionaries(NAMES, st.text(max_size=8), max_size=4), st.sampled_from(["\\", "`"]))
def test_expansion_never_raises_anything_else(text: str, env: dict[str, str], escape: str) -> None:
    lexer = ShellWords(escape)
    try:
        word = lexer.process_word(text, env)
        words = lexer.process_words(text, env)
    except errdefs.InvalidArgument:
        return
    assert isinstance(word, str)
    assert all(words) and all(isinstance(item, str) for item in words)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30).filter(lambda text: "'" not in text))
def test_single_quoting_round_trips(text: str) -> None:
    assert ShellWords().process_word(f"'{text}'", {"A": "x"}) == text


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30), st.sampled_from(["\\", "`"]))
def test_escaping_every_character_round_trips(text: str, escape: str) -> None:
    escaped = "".join(escape + character for character in text)
    assert ShellWords(escape).process_word(escaped, {"A": "x"}) == text


@settings(max_examples=300, deadline=None)
@given(NAMES, st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20))
def test_a_variable_expands_to_its_value(name: str, value: str) -> None:
    lexer = ShellWords()
    assert lexer.process_word(f"${{{name}}}", {name: value}) == value
    assert lexer.process_word(f'"${name}"', {name: value}) == value
    assert lexer.process_word(f"${{{name}:-fallback}}", {}) == "fallback"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.from_regex(r"[a-z0-9./]{1,6}", fullmatch=True), min_size=1, max_size=5))
def test_unquoted_variable_splits_on_spaces(parts: list[str]) -> None:
    assert ShellWords().process_words("$V", {"V": "  ".join(parts)}) == parts
    assert ShellWords().process_words('"$V"', {"V": " ".join(parts)}) == [" ".join(parts)]
