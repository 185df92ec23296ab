"""An Ollama Modelfile for an exported GGUF: the run's chat template as a Go TEMPLATE, its end-of-turn tokens as
stop parameters and its system prompt.

A Jinja chat template cannot be translated in general; most wrap each message in a fixed text per role. Those
pieces are read off the template by rendering marker messages, the TEMPLATE is built from them, and the pieces
must render every test conversation exactly as the template does, else the translation is refused."""

from pathlib import Path

ROLES = ("system", "user", "assistant")
MARK = {role: f"\x01ftlab-{role}\x01" for role in (*ROLES, "user2")}
CHECKS = (  # conversations the pieces must render as the Jinja template does (with the assistant's turn opened)
    [("user", "Hi")],
    [("system", "Be brief."), ("user", "Hi")],
    [("system", "S"), ("user", "Q1"), ("assistant", "A1"), ("user", "Q2")],
    [("user", "Q1"), ("assistant", "A1"), ("user", "Q2"), ("assistant", "A2"), ("user", "Q3")],
)


def chat_pieces(tokenizer) -> dict:
    """{'head', '<role>_pre', '<role>_post' for each role, 'generation'}: the fixed text before the conversation,
    around each message by role, and that opening the assistant's turn. ValueError when the template is not that."""

    def render(messages, generation=False):
        chat = [{"role": role, "content": MARK[key]} for role, key in messages]
        return tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=generation)

    def cut(text: str, *keys) -> list:
        parts = []
        for key in keys:
            if text.count(MARK[key]) != 1:
                raise ValueError("the chat template does not show each message once")
            before, text = text.split(MARK[key])
            parts.append(before)
        return [*parts, text]

    try:
        head_user, user_post = cut(render([("user", "user")]), "user")
        head_system, system_post = cut(render([("system", "system")]), "system")
        generation = _after(render([("user", "user")], True), render([("user", "user")]))
        p0, p1, p2, p3, p4 = cut(
            render([("system", "system"), ("user", "user"), ("assistant", "assistant"), ("user", "user2")], True),
            "system",
            "user",
            "assistant",
            "user2",
        )
        user_pre = _after(p1, system_post)
        head = _before(head_user, user_pre)
        pieces = {
            "head": head,
            "system_pre": _after(head_system, head),
            "system_post": system_post,
            "user_pre": user_pre,
            "user_post": user_post,
            "assistant_pre": _after(p2, user_post),
            "assistant_post": _before(p3, user_pre),
            "generation": generation,
        }
        if p0 != head + pieces["system_pre"] or p4 != user_post + generation:
            raise ValueError("the turns are not wrapped the same way each time")
    except Exception as err:  # a template that raises on these conversations is not a fixed wrapping either
        raise ValueError(f"the chat template cannot be written as an Ollama TEMPLATE ({err})") from None
    for messages in CHECKS:
        chat = [{"role": role, "content": text} for role, text in messages]
        if render_pieces(pieces, chat) != tokenizer.apply_chat_template(
            chat, tokenize=False, add_generation_prompt=True
        ):
            raise ValueError("the chat template cannot be written as an Ollama TEMPLATE (it is not a fixed wrapping)")
    return pieces


def _after(text: str, prefix: str) -> str:
    if not text.startswith(prefix):
        raise ValueError("a role's wrapping differs between turns")
    return text[len(prefix) :]


def _before(text: str, suffix: str) -> str:
    if not text.endswith(suffix):
        raise ValueError("a role's wrapping differs between turns")
    return text[: len(text) - len(suffix)]


def render_pieces(pieces: dict, chat: list) -> str:
    """What the TEMPLATE below renders for chat, with the assistant's turn opened."""
    body = "".join(pieces[f"{m['role']}_pre"] + m["content"] + pieces[f"{m['role']}_post"] for m in chat)
    return pieces["head"] + body + pieces["generation"]


def go_template(pieces: dict) -> str:
    """Ollama's TEMPLATE (Go text/template over .Messages): no whitespace trimming, the pieces are literal text."""
    for text in pieces.values():
        if "{{" in text or '"""' in text:
            raise ValueError("the chat template's text contains '{{' or '\"\"\"', which a Modelfile cannot quote")
    branches = " else ".join(
        f'if eq .Role "{role}" }}}}{pieces[f"{role}_pre"]}{{{{ .Content }}}}{pieces[f"{role}_post"]}{{{{'
        for role in ROLES
    )
    return f"{pieces['head']}{{{{ range .Messages }}}}{{{{ {branches} end }}}}{{{{ end }}}}{pieces['generation']}"


def modelfile(gguf: Path, tokenizer, system_prompt: str | None, context: int, adapter: Path | None = None) -> str:
    """The Modelfile's text; FROM (and ADAPTER) relative to the folder it is written in."""
    pieces = chat_pieces(tokenizer)
    if system_prompt and '"""' in system_prompt:
        raise ValueError('data.system_prompt contains \'"""\', which a Modelfile cannot quote')
    stops = [tokenizer.eos_token] + [t for t in tokenizer.all_special_tokens if t and t in pieces["assistant_post"]]
    lines = [
        "# Ollama: ollama create NAME -f Modelfile  (in this folder; written by python -m ftlab.export)",
        f"FROM ./{gguf.name}",
        *([f"ADAPTER ./{adapter.name}"] if adapter else []),
        f'TEMPLATE """{go_template(pieces)}"""',
        *([f'SYSTEM """{system_prompt}"""'] if system_prompt else []),
        *(f'PARAMETER stop "{stop}"' for stop in dict.fromkeys(stops)),
        f"PARAMETER num_ctx {context}",
    ]
    return "\n".join(lines) + "\n"
