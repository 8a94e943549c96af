"""The Helm chart: lint (strict), render with default and other values, and check what it
produces. Runs with the Helm v4 SDK from PyPI (helm-python-sdk); no helm binary, no cluster.

    python tests/helm/test_chart.py
"""

import copy
import json
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

import helm_python as helm
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "seatkeeper"

# Exactly what the controller calls (src/controller), cluster-wide: keep in step with the code.
CONTROLLER_RULES = {
    ("seatkeeper.dev", "addons", "get"), ("seatkeeper.dev", "addons", "list"),
    ("seatkeeper.dev", "addons", "watch"), ("seatkeeper.dev", "addons", "patch"),
    ("seatkeeper.dev", "licenseassignments", "get"), ("seatkeeper.dev", "licenseassignments", "list"),
    ("seatkeeper.dev", "licenseassignments", "watch"), ("seatkeeper.dev", "licenseassignments", "patch"),
    ("seatkeeper.dev", "subscriptions", "get"), ("seatkeeper.dev", "subscriptions", "list"),
    ("seatkeeper.dev", "subscriptions", "watch"), ("seatkeeper.dev", "subscriptions", "patch"),
    ("seatkeeper.dev", "addons/status", "patch"),
    ("seatkeeper.dev", "licenseassignments/status", "patch"),
    ("seatkeeper.dev", "subscriptions/status", "patch"),
    ("seatkeeper.dev", "organizations", "get"), ("seatkeeper.dev", "organizations", "list"),
    ("seatkeeper.dev", "organizations", "watch"),
    ("seatkeeper.dev", "organizations/status", "patch"),
    ("", "namespaces", "get"), ("", "namespaces", "list"), ("", "namespaces", "watch"),
    ("events.k8s.io", "events", "create"), ("events.k8s.io", "events", "patch"),
}
# Secrets: in the release namespace and `secrets.namespaces` (Roles), or everywhere
# (`secrets.clusterWide`, in the controller's ClusterRole).
SECRET_RULES = {("", "secrets", "get"), ("", "secrets", "list"), ("", "secrets", "watch")}
LEASE_RULES = {
    ("coordination.k8s.io", "leases", "get"),
    ("coordination.k8s.io", "leases", "create"),
    ("coordination.k8s.io", "leases", "update"),
}

failures = []


def check(ok, what):
    if not ok:
        failures.append(what)
        print(f"FAIL {what}")


def defaults():
    with helm.Chart.load(str(CHART)) as chart:
        return chart.values


def render(values=None):
    with helm.Chart.load(str(CHART)) as chart:
        merged = copy.deepcopy(defaults())
        deep_merge(merged, values or {})
        chart.validate_schema(merged)
        out = chart.render(values=values or {}, name="seatkeeper", namespace="seatkeeper-system",
                           is_install=True)
    objects = []
    for path, text in out.items():
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                objects.append(doc)
    return objects


def deep_merge(into, other):
    for k, v in other.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            deep_merge(into[k], v)
        else:
            into[k] = v


def rejected(values):
    try:
        render(values)
    except helm.HelmError as e:
        return str(e)
    return None


def find(objects, kind, name=None):
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def rules_of(role):
    return {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
            for v in rule["verbs"]}


def args_of(objects):
    return find(objects, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"]


def check_secrets(objects, namespaces, label):
    """Secrets readable in exactly `namespaces` (None: cluster-wide), the flag to match."""
    cluster_secrets = [(r["metadata"]["name"], rule) for r in find(objects, "ClusterRole")
                       for rule in r["rules"] if "secrets" in rule["resources"]]
    controller = rules_of(find(objects, "ClusterRole", "seatkeeper-controller")[0])
    roles = find(objects, "Role", "seatkeeper-secrets")
    bindings = find(objects, "RoleBinding", "seatkeeper-secrets")
    flags = [a for a in args_of(objects) if a.startswith("--secret-namespaces")]
    if namespaces is None:
        check(controller == CONTROLLER_RULES | SECRET_RULES, f"{label}: controller rules {controller}")
        check([n for n, _ in cluster_secrets] == ["seatkeeper-controller"],
              f"{label}: only the controller reads secrets cluster-wide: {cluster_secrets}")
        check(not roles and not bindings, f"{label}: no per-namespace secrets Roles")
        check(not flags, f"{label}: no --secret-namespaces: {flags}")
        return
    check(controller == CONTROLLER_RULES, f"{label}: controller rules differ: extra "
          f"{controller - CONTROLLER_RULES}, missing {CONTROLLER_RULES - controller}")
    check(not cluster_secrets, f"{label}: no ClusterRole grants secrets: {cluster_secrets}")
    role_ns = [r["metadata"]["namespace"] for r in roles]
    check(sorted(role_ns) == sorted(namespaces), f"{label}: secrets Roles in {role_ns}, want {namespaces}")
    for r in roles:
        check(rules_of(r) == SECRET_RULES, f"{label}: secrets Role rules in {r['metadata']['namespace']}: {rules_of(r)}")
    binding_ns = [b["metadata"]["namespace"] for b in bindings]
    check(sorted(binding_ns) == sorted(namespaces), f"{label}: secrets RoleBindings in {binding_ns}")
    for b in bindings:
        check(b["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "seatkeeper-secrets"},
              f"{label}: RoleBinding roleRef {b['roleRef']}")
        check(b["subjects"] == [{"kind": "ServiceAccount", "name": "seatkeeper", "namespace": "seatkeeper-system"}],
              f"{label}: RoleBinding subjects {b['subjects']}")
    check(flags == ["--secret-namespaces=" + ",".join(namespaces)], f"{label}: {flags}, want {namespaces}")


def check_rules(rule):
    """promtool: the rules are valid, and tests/helm/rules_test.yaml's cases pass against them."""
    promtool = shutil.which("promtool")
    check(promtool is not None, "promtool (Debian's prometheus package) is installed; .ci/run installs it")
    if promtool is None:
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        (tmp / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
        shutil.copy(ROOT / "tests" / "helm" / "rules_test.yaml", tmp / "rules_test.yaml")
        for args in (["check", "rules", "rules.yaml"], ["test", "rules", "rules_test.yaml"]):
            run = subprocess.run([promtool, *args], cwd=tmp, capture_output=True, text=True)
            check(run.returncode == 0, f"promtool {' '.join(args)}: {run.stdout}{run.stderr}")


def check_dashboard(dashboard):
    """The dashboard's queries (that they name only metrics the controller exports is
    src/controller/metrics.rs's test, against the metrics as scraped)."""
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [v["query"]["query"] for v in dashboard["templating"]["list"] if isinstance(v.get("query"), dict)]
    check(len(exprs) >= 10, f"the dashboard has its queries: {len(exprs)}")
    used = set(re.findall(r"seatkeeper_[a-z_]+", " ".join(exprs)))
    for wanted in ("seatkeeper_free_seats_monthly_cost", "seatkeeper_namespace_monthly_cost",
                   "seatkeeper_blocked_resources", "seatkeeper_service_throttled_total"):
        check(wanted in used, f"the dashboard shows {wanted}")


def main():
    # Lint, strict: warnings count as errors.
    for values in ({}, {"metrics": {"serviceMonitor": {"enabled": True}}, "networkPolicy": {"enabled": True}},
                   {"metrics": {"prometheusRule": {"enabled": True}, "grafanaDashboard": {"enabled": True}}},
                   {"secrets": {"namespaces": ["team-a"]}}, {"secrets": {"clusterWide": True}}):
        report = helm.lint(str(CHART), values, strict=True, namespace="seatkeeper-system")
        problems = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2] + report.get("errors", [])
        check(not problems, f"lint --strict with {values}: {problems}")

    objects = render()
    kinds = sorted({o["kind"] for o in objects})
    check(kinds == ["ClusterRole", "ClusterRoleBinding", "Deployment", "PersistentVolumeClaim", "Role",
                    "RoleBinding", "Service", "ServiceAccount"], f"default kinds: {kinds}")

    # RBAC: the controller gets exactly what it uses.
    controller = find(objects, "ClusterRole", "seatkeeper-controller")[0]
    check(rules_of(controller) == CONTROLLER_RULES,
          f"controller rules differ: extra {rules_of(controller) - CONTROLLER_RULES}, missing {CONTROLLER_RULES - rules_of(controller)}")
    lease = find(objects, "Role", "seatkeeper-leader-election")[0]
    check(rules_of(lease) == LEASE_RULES, f"lease rules: {rules_of(lease)}")
    check(lease["metadata"]["namespace"] == "seatkeeper-system", "the Lease role is namespaced")
    binding = find(objects, "ClusterRoleBinding")[0]
    check(binding["subjects"][0]["name"] == "seatkeeper", "bound to the service account")

    # Secrets: least privilege by default (the release namespace), the listed namespaces on
    # request (the release namespace once, first), cluster-wide only when opted in.
    check_secrets(objects, ["seatkeeper-system"], "default")
    check_secrets(render({"secrets": {"namespaces": ["team-a", "team-b"]}}),
                  ["seatkeeper-system", "team-a", "team-b"], "secrets.namespaces")
    check_secrets(render({"secrets": {"namespaces": ["team-a", "seatkeeper-system"]}}),
                  ["seatkeeper-system", "team-a"], "release namespace listed")
    check_secrets(render({"secrets": {"clusterWide": True, "namespaces": ["team-a"]}}), None, "clusterWide")
    no_rbac = render({"rbac": {"create": False}, "secrets": {"namespaces": ["team-a"]}})
    check(not find(no_rbac, "Role") and not find(no_rbac, "RoleBinding"), "no Roles when rbac.create=false")
    check("--secret-namespaces=seatkeeper-system,team-a" in args_of(no_rbac),
          "--secret-namespaces without rbac.create")

    # R30: the user-facing roles and their aggregation.
    billing = find(objects, "ClusterRole", "seatkeeper-billing-admin")[0]
    license_ = find(objects, "ClusterRole", "seatkeeper-license-admin")[0]
    viewer = find(objects, "ClusterRole", "seatkeeper-viewer")[0]
    writes = {"create", "update", "patch", "delete"}
    check({r for (g, r, v) in rules_of(billing) if v in writes} == {"subscriptions", "addons"},
          "billing admin writes subscriptions and add-ons only")
    check({r for (g, r, v) in rules_of(license_) if v in writes} == {"licenseassignments"},
          "license admin writes licence assignments only")
    check(not any(v in writes for (_, _, v) in rules_of(viewer)), "viewer is read-only")
    agg = lambda role: {k.rsplit("-", 1)[-1] for k, v in role["metadata"]["labels"].items()
                        if k.startswith("rbac.authorization.k8s.io/aggregate-to-") and v == "true"}
    check(agg(billing) == {"admin"} and agg(license_) == {"admin", "edit"} and agg(viewer) == {"view"},
          f"aggregation: {agg(billing)} {agg(license_)} {agg(viewer)}")
    no_agg = render({"rbac": {"aggregateToDefaultRoles": False}})
    check(all(not agg(r) for r in find(no_agg, "ClusterRole")), "aggregation can be turned off")

    # The Deployment: non-root, read-only root, no escalation, resources, probes, arguments.
    dep = find(objects, "Deployment")[0]
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    sc = c["securityContext"]
    check(pod["securityContext"]["runAsNonRoot"] is True and sc["runAsNonRoot"] is True, "non-root")
    check(sc["readOnlyRootFilesystem"] is True, "read-only root filesystem")
    check(sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"], "no escalation")
    check(pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", "seccomp")
    check(set(c["resources"]) == {"requests", "limits"}, "requests and limits")
    check(c["livenessProbe"]["httpGet"]["path"] == "/healthz", "liveness on /healthz")
    check(c["readinessProbe"]["httpGet"]["path"] == "/readyz", "readiness on /readyz")
    args = c["args"]
    for a in ("run", "--state=/var/lib/seatkeeper/tenant.yaml", "--leader-election=true",
              "--require-namespace-binding=true", "--resync=10m", "--metrics-addr=0.0.0.0:8080",
              "--shutdown-timeout=20s"):
        check(a in args, f"argument {a} in {args}")
    check(pod["terminationGracePeriodSeconds"] == 30, "the drain fits the grace period")
    check(dep["spec"]["strategy"]["type"] == "Recreate", "Recreate with a ReadWriteOnce volume")
    check(pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "seatkeeper-state", "state on the PVC")
    pvc = find(objects, "PersistentVolumeClaim")[0]
    check(pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep", "the PVC outlives the release")
    check(c["image"] == "ghcr.io/seatkeeper/seatkeeper:0.1.0", f"image defaults to appVersion: {c['image']}")

    # Toggles add and remove the optional objects.
    extra = render({"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
                    "networkPolicy": {"enabled": True, "metricsFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}]}})
    sm = find(extra, "ServiceMonitor")
    check(len(sm) == 1 and sm[0]["metadata"]["labels"]["release"] == "prom", "ServiceMonitor when asked")
    np = find(extra, "NetworkPolicy")
    check(len(np) == 1 and np[0]["spec"]["ingress"][0]["ports"][0]["port"] == 8080, "NetworkPolicy on the metrics port")
    check(not find(render({"metrics": {"service": {"enabled": False}}}), "Service"), "no Service when disabled")
    # A fleet: N replicas sharding the organizations, with the Lease verbs sharding uses.
    fleet = render({"replicaCount": 3, "sharding": {"enabled": True}, "state": {"persistence": {"enabled": False}}})
    check(find(fleet, "Deployment")[0]["spec"]["replicas"] == 3, "three replicas")
    check("--sharding" in args_of(fleet) and "--leader-election=true" in args_of(fleet), f"sharded: {args_of(fleet)}")
    check("--sharding" not in args_of(objects), "not sharded by default")
    fleet_lease = find(fleet, "Role", "seatkeeper-leader-election")[0]
    check(rules_of(fleet_lease) == LEASE_RULES | {("coordination.k8s.io", "leases", v) for v in ("list", "watch", "delete")},
          f"sharding lease rules: {rules_of(fleet_lease)}")
    no_election = render({"leaderElection": {"enabled": False}})
    check(not find(no_election, "Role", "seatkeeper-leader-election")
          and not find(no_election, "RoleBinding", "seatkeeper-leader-election"), "no Lease role without election")
    check(not find(render({"rbac": {"create": False}}), "ClusterRole"), "no RBAC when rbac.create=false")

    # Alerts and the dashboard: optional, off by default.
    check(not find(objects, "PrometheusRule") and not find(objects, "ConfigMap"),
          "no PrometheusRule nor dashboard by default")
    monitored = render({"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}},
                                    "prometheusRule": {"enabled": True, "labels": {"release": "prom"}},
                                    "grafanaDashboard": {"enabled": True}}})
    rule = find(monitored, "PrometheusRule")
    check(len(rule) == 1 and rule[0]["metadata"]["labels"]["release"] == "prom",
          "PrometheusRule when asked, with the ServiceMonitor's labels")
    if rule:
        check_rules(rule[0])
    dash = find(monitored, "ConfigMap", "seatkeeper-dashboard")
    check(len(dash) == 1 and dash[0]["metadata"]["labels"].get("grafana_dashboard") == "1",
          "the dashboard ConfigMap carries the grafana_dashboard label")
    if dash:
        check_dashboard(json.loads(dash[0]["data"]["seatkeeper.json"]))
    elsewhere = render({"metrics": {"grafanaDashboard": {"enabled": True, "namespace": "monitoring",
                                                         "labels": {"grafana_dashboard": "seatkeeper"}}}})
    cm = find(elsewhere, "ConfigMap", "seatkeeper-dashboard")[0]
    check(cm["metadata"]["namespace"] == "monitoring" and cm["metadata"]["labels"]["grafana_dashboard"] == "seatkeeper",
          "the dashboard's namespace and label can be set")

    # A sandbox: no PVC, the seed copied into an emptyDir.
    seed = (ROOT / "examples" / "tenant.yaml").read_text()
    sandbox = render({"state": {"persistence": {"enabled": False}, "seed": seed}})
    check(not find(sandbox, "PersistentVolumeClaim"), "sandbox has no PVC")
    cm = find(sandbox, "ConfigMap", "seatkeeper-seed")
    check(len(cm) == 1 and yaml.safe_load(cm[0]["data"]["tenant.yaml"]) == yaml.safe_load(seed), "seed ConfigMap")
    sdep = find(sandbox, "Deployment")[0]
    check("--seed=/etc/seatkeeper/seed/tenant.yaml" in sdep["spec"]["template"]["spec"]["containers"][0]["args"], "--seed")
    check("emptyDir" in sdep["spec"]["template"]["spec"]["volumes"][0], "emptyDir state")
    check("strategy" not in sdep["spec"], "RollingUpdate without a ReadWriteOnce volume")

    # Two replicas need shared storage and election.
    ha = render({"replicaCount": 2, "state": {"persistence": {"accessModes": ["ReadWriteMany"]}}})
    check(find(ha, "Deployment")[0]["spec"]["replicas"] == 2, "two replicas with ReadWriteMany")

    # Workload identity: the pod is labelled for the webhook, the account names the app.
    wi = render({"workloadIdentity": {"enabled": True, "clientId": "0000-app"}})
    pod_labels = find(wi, "Deployment")[0]["spec"]["template"]["metadata"]["labels"]
    check(pod_labels.get("azure.workload.identity/use") == "true", f"workload identity pod label: {pod_labels}")
    sa = find(wi, "ServiceAccount")[0]["metadata"].get("annotations", {})
    check(sa.get("azure.workload.identity/client-id") == "0000-app", f"workload identity client id: {sa}")
    plain = find(render(), "Deployment")[0]["spec"]["template"]["metadata"]["labels"]
    check("azure.workload.identity/use" not in plain, "no workload identity label by default")

    # Bad values are refused, with a reason.
    for bad, why in [
        ({"replicaCount": "two"}, "replicaCount is an integer"),
        ({"replicaCount": 0}, "replicaCount at least 1"),
        ({"resync": "ten minutes"}, "resync is a duration"),
        ({"image": {"pullPolicy": "Sometimes"}}, "pullPolicy enum"),
        ({"surprise": True}, "unknown keys"),
        ({"secrets": {"surprise": True}}, "unknown keys under secrets"),
        ({"secrets": {"clusterWide": "yes"}}, "secrets.clusterWide is a boolean"),
        ({"secrets": {"namespaces": "team-a"}}, "secrets.namespaces is a list"),
        ({"secrets": {"namespaces": ["Team A"]}}, "secrets.namespaces are namespace names"),
        ({"state": {"persistence": {"enabled": True, "accessModes": ["ReadOnlyMany"]}}}, "accessModes enum"),
        ({"metrics": {"port": 80}}, "privileged metrics port"),
        ({"replicaCount": 2}, "two replicas on ReadWriteOnce"),
        ({"replicaCount": 2, "leaderElection": {"enabled": False}, "state": {"persistence": {"accessModes": ["ReadWriteMany"]}}}, "two replicas without election"),
        ({"metrics": {"service": {"enabled": False}, "serviceMonitor": {"enabled": True}}}, "ServiceMonitor without Service"),
        ({"sharding": {"enabled": True}, "leaderElection": {"enabled": False}}, "sharding without election"),
        ({"sharding": {"enabled": "yes"}}, "sharding.enabled is a boolean"),
        ({"metrics": {"prometheusRule": {"enabled": True, "throttledRatioAbove": 5}}}, "a throttling ratio above 1"),
        ({"metrics": {"prometheusRule": {"enabled": True, "freeSeatsFor": "a while"}}}, "freeSeatsFor is a duration"),
    ]:
        check(rejected(bad) is not None, f"rejects {why}: {bad}")

    # CRDs ship with the chart, byte for byte the top-level ones.
    top = sorted(p.name for p in (ROOT / "crds").glob("*.yaml"))
    ours = sorted(p.name for p in (CHART / "crds").glob("*.yaml"))
    check(top == ours, f"chart crds/ lists {ours}, crds/ lists {top}")
    for name in top:
        check((ROOT / "crds" / name).read_bytes() == (CHART / "crds" / name).read_bytes(), f"crds/{name} identical")

    if failures:
        print(f"{len(failures)} chart checks failed")
        sys.exit(1)
    print("chart: lint, render and all checks passed")


if __name__ == "__main__":
    main()
