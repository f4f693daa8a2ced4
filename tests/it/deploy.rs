//! The files under `deploy/`: the configs they ship pass `tether check`, the Kubernetes
//! manifests hold what a fleet needs, the systemd unit passes `systemd-analyze verify`, and the
//! container file builds where a container builder runs (skipped, with the reason, elsewhere).

use crate::support::proxy::tether_bin;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn deploy(rel: &str) -> PathBuf {
    repo().join("deploy").join(rel)
}

/// Every YAML document of a manifest file.
fn documents(rel: &str) -> Vec<serde_yaml::Value> {
    let text = std::fs::read_to_string(deploy(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap_or_else(|e| panic!("{rel}: {e}")))
        .collect()
}

fn kind<'a>(docs: &'a [serde_yaml::Value], kind: &str, name: &str) -> &'a serde_yaml::Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// Assert a command succeeded, showing its stderr when it did not.
fn assert_success(out: &std::process::Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn tether_check(config: &Path) -> std::process::Output {
    Command::new(tether_bin())
        .args(["check", "--config"])
        .arg(config)
        .env(
            "TETHER_SECRET",
            "a-secret-of-at-least-32-bytes-for-checking",
        )
        .env("TETHER_ADMIN_TOKEN", "an-admin-token")
        .output()
        .expect("run tether check")
}

#[test]
fn the_kubernetes_configmap_holds_a_config_tether_check_accepts() {
    let docs = documents("kubernetes/configmap.yaml");
    let config = kind(&docs, "ConfigMap", "tether-config")["data"]["tether.yaml"]
        .as_str()
        .expect("data.tether.yaml");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tether.yaml");
    std::fs::write(&file, config).unwrap();
    let out = tether_check(&file);
    assert_success(&out, "tether check");
    assert!(String::from_utf8_lossy(&out.stdout).contains("DNS discovery in 1"));

    // The nodes are discovered through the headless Service the manifests define.
    let realtime = documents("kubernetes/realtime.yaml");
    let headless = kind(&realtime, "Service", "realtime");
    assert_eq!(
        headless["spec"]["clusterIP"], "None",
        "the realtime Service must be headless"
    );
    let parsed: serde_yaml::Value = serde_yaml::from_str(config).unwrap();
    let discover = &parsed["upstreams"]["realtime"]["discover"];
    assert_eq!(discover["dns"], "realtime.default.svc.cluster.local");
    assert_eq!(
        discover["port"], headless["spec"]["ports"][0]["port"],
        "tether dials the port the Service names"
    );
}

#[test]
fn the_deployment_runs_several_replicas_sharing_one_secret_probed_on_healthz() {
    let docs = documents("kubernetes/deployment.yaml");
    let d = kind(&docs, "Deployment", "tether");
    assert!(
        d["spec"]["replicas"].as_u64() >= Some(2),
        "at least two replicas"
    );
    let pod = &d["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let env = c["env"].as_sequence().expect("env");
    let from_secret = |name: &str| {
        env.iter()
            .find(|e| e["name"] == name)
            .map(|e| e["valueFrom"]["secretKeyRef"]["name"].clone())
    };
    assert_eq!(from_secret("TETHER_SECRET"), Some("tether-secrets".into()));
    assert_eq!(
        from_secret("TETHER_ADMIN_TOKEN"),
        Some("tether-secrets".into())
    );
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(c[probe]["httpGet"]["path"], "/healthz", "{probe}");
        assert_eq!(c[probe]["httpGet"]["port"], "admin", "{probe}");
    }
    let admin_port = c["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "admin")
        .map(|p| p["containerPort"].clone());
    assert_eq!(admin_port, Some(9901.into()));
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    // The config comes read-only from the ConfigMap.
    let volume = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["configMap"]["name"] == "tether-config")
        .expect("a ConfigMap volume");
    let mount = c["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| m["name"] == volume["name"])
        .expect("mounted");
    assert_eq!(mount["readOnly"], true);
    // Graceful shutdown must fit: preStop + grace + close_window of the shipped config.
    assert!(pod["terminationGracePeriodSeconds"].as_u64() > Some(45));
    let service = documents("kubernetes/service.yaml");
    assert_eq!(
        kind(&service, "Service", "tether")["spec"]["ports"][0]["targetPort"],
        "http"
    );
}

#[test]
fn the_container_config_passes_tether_check() {
    let out = tether_check(&deploy("container/tether.yaml"));
    assert_success(&out, "tether check");
}

/// What the Containerfile copies from the build context must exist; the runtime stage must be
/// non-root and expose the admin port. A real build runs when a container engine answers.
#[test]
fn the_containerfile_is_multi_stage_non_root_and_builds_where_a_builder_runs() {
    let file = deploy("container/Containerfile");
    let text = std::fs::read_to_string(&file).unwrap();
    let stages = text.lines().filter(|l| l.starts_with("FROM ")).count();
    assert!(stages >= 2, "multi-stage: {stages} FROM lines");
    for line in text
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let words: Vec<&str> = line.split_whitespace().collect();
        for src in &words[1..words.len() - 1] {
            assert!(
                repo().join(src).exists(),
                "COPY {src}: not in the repository"
            );
        }
    }
    let user = text
        .lines()
        .rev()
        .find(|l| l.starts_with("USER "))
        .expect("USER");
    assert!(!user.contains(" 0") && !user.contains("root"), "{user}");
    assert!(text
        .lines()
        .any(|l| l.starts_with("EXPOSE") && l.contains("9901")));

    let engine = ["docker", "podman"].into_iter().find(|e| {
        Command::new(e)
            .arg("info")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let Some(engine) = engine else {
        eprintln!("skipped building deploy/container/Containerfile: no container engine answers `docker info` or `podman info` on this machine");
        return;
    };
    let out = Command::new(engine)
        .args(["build", "-f"])
        .arg(&file)
        .args(["-t", "tether:test", "."])
        .current_dir(repo())
        .output()
        .expect("run the container build");
    assert_success(&out, &format!("{engine} build"));
}

/// `systemd-analyze verify` checks the unit's syntax, sandboxing directives and that its
/// binaries exist; the unit points at /usr/local/bin/tether, so a copy points at this build's.
#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let unit = std::fs::read_to_string(deploy("systemd/tether.service")).unwrap();
    for needed in [
        "DynamicUser=yes",
        "NoNewPrivileges=yes",
        "ReadOnlyPaths=/etc/tether",
        "ExecReload=/bin/kill -HUP $MAINPID",
        // A binary upgrade's new process announces its own pid.
        "Type=notify",
        "NotifyAccess=all",
    ] {
        assert!(unit.contains(needed), "the unit has {needed}");
    }
    let Some(analyze) = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
    else {
        eprintln!("skipped systemd-analyze verify: systemd is not installed here");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("tether.service");
    std::fs::write(&copy, unit.replace("/usr/local/bin/tether", &tether_bin())).unwrap();
    let socket = dir.path().join("tether.socket");
    std::fs::copy(deploy("systemd/tether.socket"), &socket).unwrap();
    let out = Command::new(analyze)
        .arg("verify")
        .arg(&copy)
        .arg(&socket)
        .output()
        .expect("run systemd-analyze");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "systemd-analyze verify:\n{text}");
    assert!(
        !text.contains("tether.service:"),
        "no warning about the unit:\n{text}"
    );
}
