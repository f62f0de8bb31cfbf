"""The Go-template subset used by --format, and docker's --format conventions."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lamina.cli.rows import HeaderRow, plain_fields, render_fields
from lamina.cli.templates import Record, Template, TemplateError, format_rows, go_value, render_each

DATA = {"Id": "sha256:abc", "RepoTags": ["a:1", "b:2"], "Size": 4261550,
        "Config": {"Env": ["A=1"], "Labels": None, "Cmd": ["sh", "-c", "x"]}, "Empty": []}


@pytest.mark.parametrize("template, expected", [
    ("{{.Id}}", "sha256:abc"),
    ("id={{ .Id }}!", "id=sha256:abc!"),
    ("{{.Size}}", "4261550"),
    ("{{.Config.Env}}", "[A=1]"),
    ("{{.Config.Labels}}", "<no value>"),
    ("{{.Missing}}", "<no value>"),
    ("{{.Missing.Deeper}}", "<no value>"),
    ("{{json .RepoTags}}", '["a:1","b:2"]'),
    ("{{json .Config}}", '{"Env":["A=1"],"Labels":null,"Cmd":["sh","-c","x"]}'),
    ("{{join .Config.Cmd \" \"}}", "sh -c x"),
    ("{{range .RepoTags}}<{{.}}>{{end}}", "<a:1><b:2>"),
    ("{{range .Empty}}x{{else}}none{{end}}", "none"),
    ("{{if .Config.Labels}}yes{{else}}no{{end}}", "no"),
    ("{{with .Config}}{{len .Cmd}}{{end}}", "3"),
    ("{{index .RepoTags 1}}", "b:2"),
    ("{{.Id | upper}}", "SHA256:ABC"),
    ("{{printf \"%s is %d bytes\" .Id .Size}}", "sha256:abc is 4261550 bytes"),
    ("{{range .RepoTags}}{{$.Id}} {{end}}", "sha256:abc sha256:abc "),
    ("a  {{- .Id -}}  b", "asha256:abcb"),
    ("{{if eq .Id \"sha256:abc\"}}same{{end}}", "same"),
    ("{{.Config}}", "map[Cmd:[sh -c x] Env:[A=1] Labels:<nil>]"),
])
def test_templates_render_like_go(template: str, expected: str) -> None:
    assert Template(template).render(DATA) == expected


@pytest.mark.parametrize("template", ["{{range .A}}", "{{end}}", "{{nosuch .A}}", "{{.Id \"x\"}}",
                                      "{{(.Id}}", "{{else}}"])
def test_malformed_templates_are_errors(template: str) -> None:
    with pytest.raises(TemplateError):
        Template(template).render(DATA)


def test_a_missing_field_of_a_record_is_an_error() -> None:
    with pytest.raises(TemplateError, match="can't evaluate field Nope"):
        Template("{{.Nope}}").render(Record(ID="x"))


def test_template_errors_are_usage_errors() -> None:
    from lamina.cli.errors import EXIT_USAGE

    with pytest.raises(TemplateError) as caught:
        Template("{{end}}")
    assert caught.value.exit_code == EXIT_USAGE


def test_go_value_prints_floats_like_go() -> None:
    assert go_value(4260000.0) == "4.26e+06"
    assert go_value(100000.0) == "100000"
    assert go_value(0.5) == "0.5"
    assert go_value(True) == "true"
    assert go_value(None) == "<no value>"


ROWS = [Record(ID="aaa", Repository="busybox", Tag="latest"), Record(ID="bbb", Repository="x", Tag="<none>")]


def test_format_rows_default_table() -> None:
    text = format_rows(None, ROWS, default_table="{{.Repository}}\t{{.Tag}}\t{{.ID}}",
                       headers={"ID": "IMAGE ID", "Repository": "REPOSITORY", "Tag": "TAG"})
    assert text.splitlines() == ["REPOSITORY   TAG       IMAGE ID", "busybox      latest    aaa",
                                 "x            <none>    bbb"]


def test_format_rows_custom_table_with_literal_backslash_t() -> None:
    text = format_rows("table {{.ID}}\\t{{.Tag}}", ROWS, default_table="", headers={"ID": "IMAGE ID"})
    assert text.splitlines() == ["IMAGE ID   TAG", "aaa        latest", "bbb        <none>"]


def test_format_rows_json_sorts_keys_like_go_maps() -> None:
    text = format_rows("json", ROWS, default_table="", headers={})
    assert text.splitlines()[0] == '{"ID":"aaa","Repository":"busybox","Tag":"latest"}'


def test_format_rows_plain_template_has_no_header() -> None:
    assert format_rows("{{.Repository}}:{{.Tag}}", ROWS, default_table="", headers={}) == \
        "busybox:latest\nx:<none>\n"


def test_render_each_json() -> None:
    assert render_each("json", [{"b": 1, "a": 2}]) == '{"b":1,"a":2}\n'


ROW_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.text(max_size=8),
                       st.lists(st.text(max_size=3), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
FIELD_NAMES = st.sampled_from(["ID", "Size", "Tag", "Missing", "A_b"])


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(st.one_of(FIELD_NAMES.map(lambda name: ("field", name)),
                                st.text(alphabet="ab \t|", max_size=4).map(lambda text: ("text", text))), max_size=6),
       row=st.dictionaries(FIELD_NAMES, ROW_VALUES, max_size=4))
def test_a_table_of_plain_fields_renders_as_the_general_path_does(parts, row) -> None:
    """Templates of text and {{.Field}} only (every listing's table) take a shorter path
    (lamina.cli.rows): it must give the same text, the same header, and the same error for a
    field a row lacks as the engine."""
    text = "".join("{{." + value + "}}" if kind == "field" else value for kind, value in parts)
    plain = plain_fields(text)
    assert plain is not None
    engine = Template(text)

    def outcome(render, data):
        try:
            return render(data)
        except TemplateError as exc:
            return ("error", str(exc))
    for data in (Record(row), HeaderRow({"ID": "IMAGE ID", "Tag": "TAG"})):
        assert outcome(lambda item: render_fields(text, plain, item), data) == outcome(engine.render, data)


# -- plain tables, rendered without the engine (lamina.cli.rows) ----------------------------------

_TEMPLATE_PIECES = st.sampled_from(["{{", "}}", "{", "}", ".", "ID", "Name", "_x", "9", "é", " ", "-", "\t",
                                    "\n", "$", "/*", "*/", "json", "|", "a", "{{.ID}}", "{{.Name}}", "{{._x}}",
                                    "{{.Missing}}", "{{.", "\\t"])


@settings(max_examples=400, deadline=None)
@given(st.lists(_TEMPLATE_PIECES, max_size=12).map("".join))
def test_a_template_the_rows_module_calls_plain_is_one_the_engine_parses_the_same(text: str) -> None:
    from lamina.cli import rows, templates

    parts = rows.plain_fields(text)
    if parts is None:
        return
    nodes = templates._parse(text)  # the engine accepts it, as text and single-field prints
    assert [(False, node.value) if node.kind == "text" else (True, node.value[0][0].value[1:])
            for node in nodes] == list(parts)


@pytest.mark.parametrize("template, plain", [
    ("{{.ID}}\t{{.Names}}", True),
    ("a {{.ID}} b}} {{.X_1}}", True),
    ("", True),
    ("{{ .ID }}", False),
    ("{{.ID -}}", False),
    ("{{-.ID}}", False),
    ("{{.Config.Env}}", False),
    ("{{.ID}} {{", False),
    ("{{.é}}", False),
    ("{{{.ID}}", False),
    ("{{/* c */}}", False),
], ids=lambda value: repr(value))
def test_which_templates_are_plain(template: str, plain: bool) -> None:
    from lamina.cli.rows import plain_fields

    assert (plain_fields(template) is not None) is plain


@settings(max_examples=200, deadline=None)
@given(st.lists(_TEMPLATE_PIECES, max_size=10).map("".join),
       st.lists(st.fixed_dictionaries({"ID": st.sampled_from(["abc", "", "x\ty"]),
                                        "Name": st.sampled_from(["n", "<no value>"]),
                                        "_x": st.sampled_from([1, 2.5, None, True, ["a", "b"]])}), max_size=3))
def test_format_rows_gives_what_the_engine_gives(text: str, values: list[dict[str, object]]) -> None:
    """The rows module's plain path and the engine agree on output and on errors."""
    from lamina.cli import rows, templates

    records = [Record(value) for value in values]
    headers = {"ID": "CONTAINER ID", "Name": "NAME"}
    for format in ("table " + text, text):
        try:
            expected: object = _engine_format_rows(templates, format, records, headers)
        except TemplateError as exc:
            expected = ("error", str(exc))
        try:
            found: object = rows.format_rows(format, records, default_table="{{.ID}}", headers=headers)
        except TemplateError as exc:
            found = ("error", str(exc))
        assert found == expected, format


def _engine_format_rows(templates, format: str, records: list[Record], headers: dict[str, str]) -> str:
    """format_rows as it was before plain tables skipped the engine, every template parsed by
    :class:`lamina.cli.templates.Template` and run by its general evaluator (not the plain
    rendering under test)."""
    from lamina.cli.formatting import tabulate
    from lamina.cli.rows import unescape

    def run(template: Template, data: object) -> str:
        out: list[str] = []
        template._run(template._nodes, data, data, out)
        return "".join(out)

    text = format.strip() or "table {{.ID}}"
    if text == "table":
        text = "table {{.ID}}"
    if not text.startswith("table"):
        template = templates.Template("{{json .}}" if text == "json" else unescape(text))
        return "".join(run(template, record) + "\n" for record in records)
    template = templates.Template(unescape(text[len("table"):].strip()))
    rendered = [run(template, HeaderRow(headers))] + [run(template, record) for record in records]
    return tabulate(line.split("\t") for line in "\n".join(rendered).split("\n"))
