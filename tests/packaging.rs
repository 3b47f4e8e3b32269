//! packaging/: the configs the Debian package, the container image and the
//! Kubernetes sidecar ship pass `fuwa check`, and each file agrees with the
//! others (unit ↔ CLI ↔ package assets, Dockerfile ↔ its config, manifest ↔
//! its ConfigMap). The .deb itself and `systemd-analyze verify` are checked by
//! packaging/check.sh in .ci/run.

#[path = "common/check.rs"]
mod check;
mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use rmpv::Value as V;
use serde_json::Value as J;

fn pkg(rel: &str) -> PathBuf {
    repo_root().join("packaging").join(rel)
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn must_pass(path: &Path, text: &str) {
    if let Err(e) = check::check_text(bin(), path, text) {
        panic!("{} does not pass fuwa check:\n{e}", path.display());
    }
}

fn port_of(bind: &str) -> u16 {
    bind.rsplit(':').next().unwrap().parse().unwrap()
}

/// `key = value` lines of a systemd unit, in order (repeated keys kept).
fn unit_entries(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('[') && l.contains('='))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect()
}

fn unit_values<'a>(e: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    e.iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// The Debian package's assets from Cargo.toml: source → installed path.
fn deb_assets() -> Vec<(String, String)> {
    let cargo: toml::Value = toml::from_str(&read(&repo_root().join("Cargo.toml"))).unwrap();
    cargo["package"]["metadata"]["deb"]["assets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let a = a.as_array().unwrap();
            (
                a[0].as_str().unwrap().to_string(),
                format!("/{}", a[1].as_str().unwrap()),
            )
        })
        .collect()
}

#[test]
fn systemd_unit_runs_the_packaged_binary_and_config() {
    let unit = read(&pkg("systemd/fuwa.service"));
    let e = unit_entries(&unit);
    let exec = unit_values(&e, "ExecStart");
    assert_eq!(exec.len(), 1);
    let args: Vec<&str> = exec[0].split_whitespace().collect();
    assert_eq!(args[..2], ["/usr/bin/fuwa", "run"], "{exec:?}");
    let flag = |f: &str| args.iter().position(|a| *a == f).map(|i| args[i + 1]);
    let config = flag("-c").expect("-c");
    let data_dir = flag("--data-dir").expect("--data-dir");

    // the package installs the binary and the config where the unit looks
    let assets = deb_assets();
    let dest = |src: &str| {
        assets
            .iter()
            .find(|(s, _)| s == src)
            .map(|(_, d)| d.clone())
            .unwrap_or_else(|| panic!("{src} is not a package asset"))
    };
    assert_eq!(dest("target/release/fuwa"), "/usr/bin/");
    assert_eq!(dest("packaging/debian/fuwa.toml"), config);

    // systemd makes (and chowns) the state directory the unit passes
    assert_eq!(
        format!("/var/lib/{}", unit_values(&e, "StateDirectory")[0]),
        data_dir
    );
    let cfg_text = read(&pkg("debian/fuwa.toml"));
    let cfg: toml::Value = toml::from_str(&cfg_text).unwrap();
    assert_eq!(cfg["agent"]["data_dir"].as_str(), Some(data_dir));

    // reload: the config is checked, then SIGHUP; Type=notify (sd_notify)
    assert_eq!(
        unit_values(&e, "ExecReload"),
        [
            format!("/usr/bin/fuwa check -c {config}").as_str(),
            "/bin/kill -HUP $MAINPID"
        ]
    );
    assert_eq!(unit_values(&e, "Type"), ["notify"]);
    assert_eq!(unit_values(&e, "User"), ["fuwa"]);
    assert_eq!(unit_values(&e, "ProtectSystem"), ["strict"]);
    assert_eq!(unit_values(&e, "CapabilityBoundingSet"), [""]);
    // a config error exits 2: systemd must not restart in a loop on it
    assert_eq!(unit_values(&e, "RestartPreventExitStatus"), ["2"]);
    let o = Command::new(bin())
        .args(["run", "-c", "/nonexistent/fuwa.toml"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));

    // with ProtectSystem=strict only StateDirectory and LogsDirectory are
    // writable: every file output of the packaged config must be inside them
    let writable = [
        data_dir.to_string(),
        format!("/var/log/{}", unit_values(&e, "LogsDirectory")[0]),
    ];
    let outputs = cfg["output"].as_array().unwrap();
    for o in outputs
        .iter()
        .filter(|o| o["type"].as_str() == Some("file"))
    {
        let path = o["path"].as_str().unwrap();
        assert!(
            writable.iter().any(|w| path.starts_with(&format!("{w}/"))),
            "{path} is not writable under ProtectSystem=strict"
        );
    }
    must_pass(&pkg("debian/fuwa.toml"), &cfg_text);
}

#[test]
fn packaged_default_config_delivers_and_stops_on_sigterm() {
    // the Debian default config, as systemd runs it (run -c FILE --data-dir
    // DIR), on a free port and a temporary /var/log/fuwa
    let cfg = read(&pkg("debian/fuwa.toml"))
        .replace("127.0.0.1:24224", "127.0.0.1:{port}")
        .replace("/var/log/fuwa/", "{dir}/log/");
    assert!(cfg.contains("{port}") && cfg.contains("{dir}/log/"));
    let mut a = Agent::start(&cfg);
    let mut s = a.connect();
    let t: u32 = 1_700_000_000; // 2023-11-14 22:13:20 UTC
    let mut d = t.to_be_bytes().to_vec();
    d.extend_from_slice(&0u32.to_be_bytes());
    let msg = mp(&V::Array(vec![
        V::from("app.web"),
        V::Ext(0, d),
        V::Map(vec![(V::from("msg"), V::from("hello from the package"))]),
        V::Map(vec![(V::from("chunk"), V::from("c1"))]),
    ]));
    send(&mut s, &msg);
    assert_eq!(
        read_mp(&mut s),
        V::Map(vec![(V::from("ack"), V::from("c1"))])
    );
    let file = a.path("log/app.web/20231114-22.jsonl");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !file.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = a.stop();
    assert!(status.success(), "{status}: {}", a.stderr());
    let text = read(&file);
    let line: J = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(line["msg"], "hello from the package");
    assert_eq!(line["tag"], "app.web");
    assert_eq!(line["time"], "2023-11-14T22:13:20.000000000Z");
    assert_eq!(text.lines().count(), 1, "{text}");
}

#[test]
fn dockerfile_agrees_with_its_default_config() {
    let df = read(&pkg("docker/Dockerfile"));
    let cfg_path = pkg("docker/fuwa.toml");
    let cfg_text = read(&cfg_path);
    must_pass(&cfg_path, &cfg_text);
    let cfg: toml::Value = toml::from_str(&cfg_text).unwrap();
    let lines: Vec<&str> = df
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    let instr = |name: &str| -> Vec<String> {
        lines
            .iter()
            .filter_map(|l| l.strip_prefix(name))
            .filter_map(|rest| rest.strip_prefix(' '))
            .map(str::to_string)
            .collect()
    };

    // the builder is the toolchain the project is built and tested with
    let from = instr("FROM");
    assert!(from[0].starts_with("rust:1.95"), "{from:?}");
    assert_eq!(from.len(), 2, "multi-stage: {from:?}");
    // a RELR-linked binary starts only on glibc >= 2.36: both stages are
    // Debian 12 (bookworm), whose glibc is 2.36
    if df.contains("pack-relative-relocs") {
        assert!(from[0].contains("-bookworm"), "{from:?}");
        assert!(from[1].contains("debian12"), "{from:?}");
    }

    // every port the default config binds is exposed, and nothing else
    let mut binds = BTreeSet::new();
    binds.insert(port_of(cfg["agent"]["api"]["bind"].as_str().unwrap()));
    for i in cfg["input"].as_array().unwrap() {
        let bind = i["bind"].as_str().unwrap();
        assert!(
            bind.starts_with("0.0.0.0:"),
            "{bind}: unreachable from outside the container"
        );
        binds.insert(port_of(bind));
    }
    let exposed: BTreeSet<u16> = instr("EXPOSE")
        .iter()
        .flat_map(|l| l.split_whitespace())
        .map(|p| p.split('/').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(exposed, binds);
    assert_eq!(binds, BTreeSet::from([24220, 24224, 9880]));

    // the volume is the data dir; the process is not root
    assert_eq!(instr("VOLUME"), [r#"["/var/lib/fuwa"]"#]);
    assert_eq!(cfg["agent"]["data_dir"].as_str(), Some("/var/lib/fuwa"));
    let user = instr("USER");
    assert_eq!(user.len(), 1);
    assert!(!user[0].starts_with('0') && !user[0].starts_with("root"));
    assert!(df.contains("--chown=65532:65532 /out/var/lib/fuwa /var/lib/fuwa"));

    // the config it copies in is this file, and it is the one CMD runs
    assert!(df.contains("install -D -m 0644 packaging/docker/fuwa.toml /out/etc/fuwa/fuwa.toml"));
    assert_eq!(instr("ENTRYPOINT"), [r#"["/usr/bin/fuwa"]"#]);
    assert_eq!(instr("CMD"), [r#"["run", "-c", "/etc/fuwa/fuwa.toml"]"#]);
    // the ignore file BuildKit reads for this Dockerfile keeps target/ out
    assert!(read(&pkg("docker/Dockerfile.dockerignore"))
        .lines()
        .any(|l| l == "target/"));
}

/// The manifest's documents as JSON, parsed by PyYAML.
fn manifest() -> Vec<J> {
    let py = std::env::var("FUWA_PYTHON").unwrap_or_else(|_| "python3".into());
    let o = Command::new(&py)
        .args([
            "-c",
            "import json, sys, yaml\n\
             print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))",
        ])
        .arg(pkg("kubernetes/sidecar.yaml"))
        .output()
        .unwrap_or_else(|e| panic!("{py}: {e} (set FUWA_PYTHON to the venv of .ci/run)"));
    assert!(
        o.status.success(),
        "PyYAML: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

fn named<'a>(list: &'a J, name: &str) -> &'a J {
    list.as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {list}"))
}

#[test]
fn kubernetes_sidecar_manifest_and_its_config() {
    let docs = manifest();
    let kind = |k: &str| {
        docs.iter()
            .find(|d| d["kind"] == k)
            .unwrap_or_else(|| panic!("no {k}"))
    };
    let cm = kind("ConfigMap");
    let dep = kind("Deployment");
    let spec = &dep["spec"]["template"]["spec"];
    assert_eq!(
        spec["serviceAccountName"],
        kind("ServiceAccount")["metadata"]["name"]
    );

    // the embedded config passes `fuwa check`
    let cfg_text = cm["data"]["fuwa.toml"].as_str().expect("data.fuwa.toml");
    must_pass(Path::new("sidecar.yaml#web-fuwa/fuwa.toml"), cfg_text);
    let cfg: toml::Value = toml::from_str(cfg_text).unwrap();

    // fuwa: a native sidecar reading that ConfigMap at the path it is given
    let fuwa = named(&spec["initContainers"], "fuwa");
    assert_eq!(fuwa["restartPolicy"], "Always");
    let args: Vec<&str> = fuwa["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args, ["run", "-c", "/etc/fuwa/fuwa.toml"]);
    let mounts = &fuwa["volumeMounts"];
    let config_vol = named(
        &spec["volumes"],
        named(mounts, "fuwa-config")["name"].as_str().unwrap(),
    );
    assert_eq!(config_vol["configMap"]["name"], cm["metadata"]["name"]);
    assert_eq!(named(mounts, "fuwa-config")["mountPath"], "/etc/fuwa");

    // the root filesystem is read-only: data_dir must be a writable volume
    assert_eq!(fuwa["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(fuwa["securityContext"]["runAsNonRoot"], true);
    let data_dir = cfg["agent"]["data_dir"].as_str().unwrap();
    let data = mounts
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == data_dir)
        .unwrap_or_else(|| panic!("data_dir {data_dir} is not a volume"));
    assert_ne!(data["readOnly"], true);
    assert!(named(&spec["volumes"], data["name"].as_str().unwrap())["emptyDir"].is_object());

    // the files fuwa tails are on a volume the app container writes
    let app = named(&spec["containers"], "app");
    let tail = cfg["input"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"].as_str() == Some("tail"))
        .expect("a tail input");
    let glob = tail["path"].as_str().unwrap();
    let dir = glob.rsplit_once('/').unwrap().0;
    let fuwa_logs = mounts
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == dir)
        .unwrap_or_else(|| panic!("{dir} is not mounted in fuwa"));
    let app_logs = named(&app["volumeMounts"], fuwa_logs["name"].as_str().unwrap());
    assert_eq!(app_logs["mountPath"], dir);
    assert_ne!(app_logs["readOnly"], true);
    assert!(named(&spec["volumes"], fuwa_logs["name"].as_str().unwrap())["emptyDir"].is_object());

    // the forward port for the app, on localhost, is the one declared
    let fwd = cfg["input"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"].as_str() == Some("forward"))
        .expect("a forward input");
    let fwd_bind = fwd["bind"].as_str().unwrap();
    assert!(fwd_bind.starts_with("127.0.0.1:"));
    assert_eq!(
        named(&fuwa["ports"], "forward")["containerPort"],
        port_of(fwd_bind)
    );
    assert_eq!(
        named(&app["env"], "FLUENTD_PORT")["value"],
        port_of(fwd_bind).to_string()
    );

    // the probes ask /health on the [agent.api] port, reachable from the kubelet
    let api_bind = cfg["agent"]["api"]["bind"]
        .as_str()
        .expect("[agent.api] bind");
    assert!(api_bind.starts_with("0.0.0.0:"), "{api_bind}");
    // (no readinessProbe: output trouble must not make the app's pod unready)
    assert!(fuwa.get("readinessProbe").is_none());
    for probe in ["startupProbe", "livenessProbe"] {
        let get = &fuwa[probe]["httpGet"];
        assert_eq!(get["path"], "/health", "{probe}");
        let port = named(&fuwa["ports"], get["port"].as_str().unwrap());
        assert_eq!(port["containerPort"], port_of(api_bind), "{probe}");
    }
    assert_eq!(
        dep["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"],
        port_of(api_bind).to_string()
    );

    // resources: a memory limit above the config's memory bound (with the
    // environment the manifest gives fuwa) and a request above the RSS of
    // forward or tail at full speed (~23 MiB)
    let mib = |q: &J| -> u64 {
        q.as_str()
            .unwrap()
            .strip_suffix("Mi")
            .unwrap()
            .parse()
            .unwrap()
    };
    let res = &fuwa["resources"];
    let env: Vec<(&str, &str)> = fuwa["env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| Some((e["name"].as_str()?, e["value"].as_str()?)))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        env.iter().any(|(k, _)| *k == "TOKIO_WORKER_THREADS"),
        "the bound depends on the workers: the manifest sets them"
    );
    let bound = check::bound_bytes(bin(), cfg_text, &env);
    let limit = mib(&res["limits"]["memory"]);
    assert!(
        bound <= limit << 20,
        "the config's memory bound ({:.1} MiB) is over the container's limit ({limit} Mi)",
        bound as f64 / (1u64 << 20) as f64
    );
    assert!(mib(&res["requests"]["memory"]) >= 24);
    // the buffer fits the volume it is on
    let size_limit = named(&spec["volumes"], data["name"].as_str().unwrap())["emptyDir"]
        ["sizeLimit"]
        .as_str()
        .unwrap();
    assert_eq!(size_limit, "1Gi");
    let total = cfg["output"][0]["buffer"]["total_limit_size"]
        .as_str()
        .unwrap();
    assert!(total.strip_suffix("MiB").unwrap().parse::<u64>().unwrap() < 1024);

    // fuwa stops after the app and has time to flush (shutdown_timeout 30s)
    assert!(spec["terminationGracePeriodSeconds"].as_u64().unwrap() > 30);
}

#[test]
fn kubernetes_manifest_validates_against_the_api_schemas() {
    // kubernetes-validate (PyPI, tests/python/requirements.txt) with the
    // OpenAPI schemas it ships: strict, so an unknown or misplaced field fails
    let py = std::env::var("FUWA_PYTHON").unwrap_or_else(|_| "python3".into());
    let o = Command::new(&py)
        .args(["-m", "kubernetes_validate", "--strict", "-k", "1.29.0"])
        .arg(pkg("kubernetes/sidecar.yaml"))
        .output()
        .unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{out}");
    assert_eq!(out.matches(" passed for resource ").count(), 3, "{out}");
}

#[test]
fn commands_in_the_conf_headers_work() {
    // each example's header shows how to use it (`#   fuwa check -c conf/X`,
    // `#   fuwa athena-ddl -c conf/X ...`): those commands must do what
    // they say (`run` is left to the tests that run pipelines)
    let data = tempfile::tempdir().unwrap();
    let mut ran = 0;
    for e in std::fs::read_dir(repo_root().join("conf")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().map(|x| x != "toml").unwrap_or(true) {
            continue;
        }
        let text = read(&p);
        check::check(bin(), &p).unwrap_or_else(|e| panic!("{e}"));
        for line in text.lines() {
            let Some(cmd) = line.trim_start_matches('#').trim().strip_prefix("fuwa ") else {
                continue;
            };
            let mut args: Vec<String> = cmd
                .split_whitespace()
                .map(|a| match a.strip_prefix("conf/") {
                    Some(f) => repo_root().join("conf").join(f).display().to_string(),
                    None => a.to_string(),
                })
                .collect();
            match args[0].as_str() {
                "check" => {}
                "athena-ddl" => {
                    args.push("--data-dir".into());
                    args.push(data.path().display().to_string());
                }
                _ => continue,
            }
            let o = Command::new(bin()).args(&args).output().unwrap();
            let out = String::from_utf8_lossy(&o.stdout);
            assert!(
                o.status.success(),
                "{}: fuwa {cmd}: {}",
                p.display(),
                String::from_utf8_lossy(&o.stderr)
            );
            if args[0] == "athena-ddl" {
                assert!(out.contains("'projection.enabled' = 'true'"), "{out}");
                assert!(
                    out.contains("content_type=${content_type}/year=${year}/month=${month}/day=${day}/hour=${hour}/'"),
                    "{out}"
                );
            }
            ran += 1;
        }
    }
    assert!(ran >= 3, "{ran} commands");
}
