"""deploy/Containerfile: the properties production relies on, read from the file itself.

Building it needs a base image from a registry; where one is reachable (CI's `image` job) the
image is built and smoke-tested. Here each property is checked on the text, by a function that
lists what breaks it, and each function is shown a Containerfile that breaks it.
"""

from __future__ import annotations

import re

from tests.deploy.support import DEPLOY, env_pairs, stages

CONTAINERFILE = DEPLOY / "Containerfile"
SECRETISH = re.compile(r"SECRET|TOKEN|PASSW|KEY|DATABASE_URL|DSN|CREDENTIAL|AUTH", re.I)
COMPILERS = re.compile(r"\b(gcc|g\+\+|clang|build-essential|make|cc|python3?-dev|libpq-dev)\b")
PINNED_IMAGE = re.compile(r"^(?P<name>[\w.\-/:]+?):(?P<tag>[\w.\-]+)(?:@sha256:(?P<digest>[0-9a-f]{64}))?$")


def problems(text: str) -> list[str]:
    """Everything in a Containerfile that breaks the rules docs/operations.md states."""
    args, found = stages(text)
    if len(found) < 2:
        return ["not multi-stage: build the wheel in one stage, run it from another"]
    out = _base_problems(args, found) + _secret_problems(args, found)
    final = found[-1]
    out += _user_problems(final) + _entry_problems(final) + _network_problems(final)
    out += _install_problems(found)
    return out


def _resolve(base: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), base)


def _base_problems(args: dict[str, str], found: list) -> list[str]:
    out = []
    for stage in found:
        image = _resolve(stage.base, args)
        if any(image == s.name for s in found):
            continue  # FROM an earlier stage
        m = PINNED_IMAGE.match(image)
        if not m or m["tag"] == "latest" or not re.match(r"3\.11\.\d+-slim", m["tag"]):
            out.append(f"base {image!r}: pin python:3.11.N-slim... by explicit tag (and digest)")
        elif m["digest"] is None:
            out.append(f"base {image!r}: no digest")
    return out


def _secret_problems(args: dict[str, str], found: list) -> list[str]:
    names = list(args)
    for stage in found:
        for ins in stage.all("ENV"):
            names += list(env_pairs(ins))
        names += [ins.args.split("=")[0] for ins in stage.all("ARG")]
    return [f"secret-looking build variable {n}" for n in names if SECRETISH.search(n)]


def _user_problems(final) -> list[str]:
    users = final.all("USER")
    if not users:
        return ["the final stage runs as root: no USER"]
    user = users[-1].args.split(":")[0]
    if not user.isdigit() or int(user) == 0:
        return [f"USER {users[-1].args}: a numeric non-zero uid (runAsNonRoot checks it)"]
    return []


def _entry_problems(final) -> list[str]:
    out = []
    entry, cmd = final.all("ENTRYPOINT"), final.all("CMD")
    if not entry or entry[-1].json_args() != ["integration-dispatch"]:
        out.append('ENTRYPOINT must be ["integration-dispatch"] (exec form: SIGTERM reaches the daemon)')
    if not cmd or cmd[-1].json_args() != ["serve"]:
        out.append('CMD must be ["serve"]')
    checks = final.all("HEALTHCHECK")
    if not checks or " CMD " not in f" {checks[-1].args} " or "NONE" in checks[-1].args.upper().split():
        out.append("no HEALTHCHECK")
    elif "integration-dispatch-healthcheck" not in checks[-1].args:
        out.append("HEALTHCHECK does not run the liveness probe (integration-dispatch-healthcheck)")
    if [s.args for s in final.all("STOPSIGNAL")] not in ([], ["SIGTERM"]):
        out.append("STOPSIGNAL must be SIGTERM: it starts the drain")
    return out


def _network_problems(final) -> list[str]:
    env: dict[str, str] = {}
    for ins in final.all("ENV"):
        env.update(env_pairs(ins))
    exposed = {e.args.split("/")[0] for e in final.all("EXPOSE")}
    out = []
    if env.get("DISPATCH_HTTP_HOST") != "0.0.0.0":
        out.append("DISPATCH_HTTP_HOST must be 0.0.0.0 in a container (127.0.0.1 is unreachable from outside)")
    if env.get("DISPATCH_HTTP_PORT") is None or {env.get("DISPATCH_HTTP_PORT")} != exposed:
        out.append(f"DISPATCH_HTTP_PORT {env.get('DISPATCH_HTTP_PORT')} is not the EXPOSEd port {sorted(exposed)}")
    return out


def _install_problems(found: list) -> list[str]:
    out = []
    for stage in found:
        for run in stage.all("RUN"):
            for command in re.split(r"&&|;", run.args):
                if re.search(r"\bpip\b.*\binstall\b", command) and "uninstall" not in command:
                    if "-r " in command and "--require-hashes" not in command:
                        out.append(f"unhashed install: {command.strip()}")
                    elif "-r " not in command and "--no-index" not in command:
                        out.append(f"install that can fetch unhashed packages: {command.strip()}")
    final = found[-1]
    for run in final.all("RUN"):
        if re.search(r"\b(apt-get|apt|apk|dnf|yum)\b.*\binstall\b", run.args) or COMPILERS.search(run.args):
            out.append(f"the final stage installs packages: {run.args}")
        if re.search(r"\bpip\b", run.args):
            out.append(f"the final stage runs pip: {run.args}")
    for copy in final.all("COPY"):
        if not copy.args.startswith("--from="):
            out.append(f"the final stage copies from the build context: {copy.args}")
    return out


def test_containerfile__meets_every_rule() -> None:
    assert problems(CONTAINERFILE.read_text()) == []


def test_containerfile__the_final_stage_is_the_venv_only() -> None:
    _, found = stages(CONTAINERFILE.read_text())
    build, final = found
    assert build.name == "build" and final.base == build.base, "same base in both stages: the venv's python"
    assert [c.args for c in final.all("COPY")] == ["--from=build /opt/venv /opt/venv"]
    assert "/opt/venv/bin/integration-dispatch-healthcheck" in " ".join(c.args for c in build.all("COPY"))


BASE = "ARG PYTHON_IMAGE=docker.io/library/python:3.11.14-slim-bookworm@sha256:" + "a" * 64 + "\n"
GOOD = BASE + """FROM ${PYTHON_IMAGE} AS build
RUN pip install --require-hashes -r deploy/requirements.lock && pip install --no-deps --no-index /w/x.whl
FROM ${PYTHON_IMAGE}
COPY --from=build /opt/venv /opt/venv
ENV DISPATCH_HTTP_HOST=0.0.0.0 DISPATCH_HTTP_PORT=8787
USER 10001:10001
EXPOSE 8787
HEALTHCHECK CMD ["integration-dispatch-healthcheck"]
ENTRYPOINT ["integration-dispatch"]
CMD ["serve"]
"""


def test_problems__a_good_minimal_containerfile_passes() -> None:
    assert problems(GOOD) == []


def test_problems__each_rule_can_fail() -> None:
    """Guards the checker: every broken variant of GOOD is named."""
    cases = {
        "not multi-stage": "FROM python:3.11.14-slim\nUSER 1\n",
        "pin python": GOOD.replace(BASE, "ARG PYTHON_IMAGE=python:latest\n"),
        "no digest": GOOD.replace("@sha256:" + "a" * 64, ""),
        "secret-looking build variable SUPABASE_JWT_SECRET": GOOD.replace("ENV ", "ENV SUPABASE_JWT_SECRET=x "),
        "secret-looking build variable DATABASE_URL": GOOD.replace("FROM ${PYTHON_IMAGE}\n",
                                                                  "FROM ${PYTHON_IMAGE}\nARG DATABASE_URL\n"),
        "runs as root": GOOD.replace("USER 10001:10001\n", ""),
        "a numeric non-zero uid": GOOD.replace("USER 10001:10001", "USER root"),
        'ENTRYPOINT must be ["integration-dispatch"]': GOOD.replace('ENTRYPOINT ["integration-dispatch"]',
                                                                    "ENTRYPOINT integration-dispatch"),
        'CMD must be ["serve"]': GOOD.replace('CMD ["serve"]', 'CMD ["dev"]'),
        "no HEALTHCHECK": GOOD.replace('HEALTHCHECK CMD ["integration-dispatch-healthcheck"]', "HEALTHCHECK NONE"),
        "STOPSIGNAL must be SIGTERM": GOOD + "STOPSIGNAL SIGKILL\n",
        "must be 0.0.0.0": GOOD.replace("DISPATCH_HTTP_HOST=0.0.0.0", "DISPATCH_HTTP_HOST=127.0.0.1"),
        "is not the EXPOSEd port": GOOD.replace("EXPOSE 8787", "EXPOSE 8080"),
        "unhashed install": GOOD.replace("--require-hashes ", ""),
        "can fetch unhashed packages": GOOD.replace("--no-index ", ""),
        "the final stage installs packages": GOOD.replace("USER 10001", "RUN apt-get install -y gcc\nUSER 10001"),
        "copies from the build context": GOOD.replace("COPY --from=build /opt/venv /opt/venv",
                                                      "COPY . /src"),
    }
    for expected, text in cases.items():
        found = problems(text)
        assert any(expected in p for p in found), f"{expected!r} not reported: {found}"


def test_instructions__join_continuations_and_skip_comments() -> None:
    from tests.deploy.support import instructions

    parsed = instructions("# c\nRUN a \\\n  # inner comment\n  && b\nENV X=1 \\\n    Y=2\n")
    assert [(i.keyword, i.args) for i in parsed] == [("RUN", "a && b"), ("ENV", "X=1 Y=2")]
