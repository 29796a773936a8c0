//! The Argo CD health check and resource actions in `deploy/argocd`, run on fixture Rollouts in
//! a Lua 5.1 state with what Argo CD's gives its scripts (the global `obj`; the base and table
//! libraries; os.time and os.date). Each action must write what `kubectl sluice` writes, compared
//! with the plugin's own functions, and `argocd-cm.yaml` must carry the current Lua files.

use mlua::{DeserializeOptions, Lua, LuaOptions, LuaSerdeExt, SerializeOptions, StdLib};
use serde_json::{Value, json};
use sluice::api::{COMMANDS_ANNOTATION, Rollout, RolloutCommands, RolloutPhase};
use sluice::plugin::{Request, merge_patch, request_patch, set_paused, target_revision, with_request};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/argocd");

/// The actions, in the order `argocd-cm.yaml` lists them.
const ACTIONS: [&str; 6] = ["promote", "promote-full", "abort", "retry", "pause", "resume"];

const REQUESTS: [(&str, Request); 4] = [
    ("promote", Request::Promote { full: false }),
    ("promote-full", Request::Promote { full: true }),
    ("abort", Request::Abort),
    ("retry", Request::Retry),
];

fn script(path: &str) -> String {
    std::fs::read_to_string(format!("{DIR}/{path}")).unwrap_or_else(|e| panic!("deploy/argocd/{path}: {e}"))
}

/// A Lua state with what Argo CD opens for custom scripts (util/lua in Argo CD): the base, package
/// and table libraries and a "safe" os with only `time` and `date`. No string, math or io library.
fn argocd_lua() -> Lua {
    let lua = Lua::new_with(StdLib::TABLE | StdLib::PACKAGE | StdLib::OS, LuaOptions::default()).unwrap();
    let os: mlua::Table = lua.globals().get("os").unwrap();
    let safe = lua.create_table().unwrap();
    for function in ["time", "date"] {
        safe.set(function, os.get::<mlua::Function>(function).unwrap()).unwrap();
    }
    lua.globals().set("os", safe).unwrap();
    lua
}

/// Runs a script as Argo CD does: the object as the global `obj`, the value returned read back as
/// JSON. An error raised by the script is Argo CD refusing the action with its message.
fn run(path: &str, object: &Value) -> Result<Value, String> {
    let lua = argocd_lua();
    // Argo CD turns JSON null into nil and sets no metatables on arrays.
    let into = SerializeOptions::new().serialize_none_to_null(false).serialize_unit_to_null(false).set_array_metatable(false);
    lua.globals().set("obj", lua.to_value_with(object, into).unwrap()).unwrap();
    let returned: mlua::Value = lua.load(script(path)).set_name(path).eval().map_err(|e| e.to_string())?;
    let json: Value = lua.from_value_with(returned, DeserializeOptions::new()).map_err(|e| e.to_string())?;
    Ok(clean(numbers(json), object))
}

/// Lua 5.1 has only floats: whole numbers go back to integers, as Argo CD's JSON encoder writes them.
fn numbers(value: Value) -> Value {
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => json!(f as i64),
            _ => Value::Number(n),
        },
        Value::Array(items) => Value::Array(items.into_iter().map(numbers).collect()),
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, numbers(v))).collect()),
        other => other,
    }
}

/// An empty Lua table reads back as an empty array; Argo CD puts back the empty object it was
/// (cleanReturnedObj), and so does this.
fn clean(new: Value, old: &Value) -> Value {
    match (new, old) {
        (Value::Array(items), Value::Object(_)) if items.is_empty() => old.clone(),
        (Value::Object(map), Value::Object(before)) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let cleaned = match before.get(&k) {
                        Some(was) => clean(v, was),
                        None => v,
                    };
                    (k, cleaned)
                })
                .collect(),
        ),
        (Value::Array(items), Value::Array(before)) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| match before.get(i) {
                    Some(was) => clean(v, was),
                    None => v,
                })
                .collect(),
        ),
        (new, _) => new,
    }
}

/// A canary Rollout at generation 2, with `status` (none when null).
fn fixture(status: Value) -> Value {
    let mut rollout = json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "web", "namespace": "shop", "generation": 2, "resourceVersion": "4711"},
        "spec": {
            "workload": {"kubernetes": {
                "replicas": 4,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "shop/web:2"}]}}
            }},
            "strategy": {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}]}}
        }
    });
    if !status.is_null() {
        rollout["status"] = status;
    }
    rollout
}

/// A status the controller has written for generation 2, rolling out bbbbbbbbbb over aaaaaaaaaa.
fn status(phase: RolloutPhase, message: &str) -> Value {
    json!({
        "phase": phase,
        "message": message,
        "observedGeneration": 2,
        "currentStepIndex": 1,
        "stableRevision": "aaaaaaaaaa",
        "updateRevision": "bbbbbbbbbb",
        "canaryWeight": 20,
        "handledCommands": {"promote": "20260301T110000.000Z-00000001"}
    })
}

fn with(mut value: Value, changes: Value) -> Value {
    for (key, change) in changes.as_object().unwrap() {
        value[key] = change.clone();
    }
    value
}

/// Every state a request can meet: rolling out, paused, aborted, at rest, not yet seen, no status.
fn fixtures() -> Vec<(&'static str, Value)> {
    let paused = status(RolloutPhase::Paused, "paused at step 1 until promoted: run `kubectl sluice promote web` to continue");
    vec![
        ("progressing", fixture(status(RolloutPhase::Progressing, "step 0: setWeight 20"))),
        ("paused", fixture(paused.clone())),
        (
            "paused by spec",
            with(fixture(paused.clone()), json!({"spec": with(fixture(Value::Null)["spec"].clone(), json!({"paused": true}))})),
        ),
        ("aborted", fixture(with(status(RolloutPhase::Degraded, "aborted: analysis failed"), json!({"abort": true})))),
        ("past its deadline", fixture(status(RolloutPhase::Degraded, "no progress for 600s"))),
        ("at rest", fixture(with(status(RolloutPhase::Healthy, "revision aaaaaaaaaa is stable"), json!({"updateRevision": "aaaaaaaaaa"})))),
        (
            "new spec not seen",
            fixture(with(
                status(RolloutPhase::Healthy, "revision aaaaaaaaaa is stable"),
                json!({"updateRevision": "aaaaaaaaaa", "observedGeneration": 1}),
            )),
        ),
        ("rolling out, new spec not seen", fixture(with(status(RolloutPhase::Paused, "paused"), json!({"observedGeneration": 1})))),
        ("no status", fixture(Value::Null)),
    ]
}

fn typed(rollout: &Value) -> Rollout {
    serde_json::from_value(rollout.clone()).expect("the fixture is a Rollout")
}

/// The health Argo CD must show for each phase; a new phase does not compile until it is mapped
/// here and in health.lua.
fn argocd_health(phase: RolloutPhase) -> &'static str {
    match phase {
        RolloutPhase::Healthy => "Healthy",
        RolloutPhase::Progressing => "Progressing",
        RolloutPhase::Paused => "Suspended",
        RolloutPhase::Degraded => "Degraded",
    }
}

const PHASES: [RolloutPhase; 4] = [RolloutPhase::Progressing, RolloutPhase::Paused, RolloutPhase::Healthy, RolloutPhase::Degraded];

#[test]
fn health_maps_every_phase_and_carries_the_message() {
    for phase in PHASES {
        let message = format!("the controller's message while {phase}");
        let health = run("health.lua", &fixture(status(phase, &message))).unwrap();
        assert_eq!(health, json!({"status": argocd_health(phase), "message": message}), "phase {phase}");
    }
    let without_message = fixture(with(status(RolloutPhase::Healthy, ""), json!({"message": null})));
    assert_eq!(run("health.lua", &without_message).unwrap(), json!({"status": "Healthy"}));
}

#[test]
fn health_is_progressing_until_the_controller_has_seen_the_spec() {
    let stale = fixture(with(status(RolloutPhase::Healthy, "revision aaaaaaaaaa is stable"), json!({"observedGeneration": 1})));
    let mut no_observed = fixture(status(RolloutPhase::Healthy, "revision aaaaaaaaaa is stable"));
    no_observed["status"].as_object_mut().unwrap().remove("observedGeneration");
    for (name, rollout) in [("stale generation", stale), ("no observedGeneration", no_observed), ("no status", fixture(Value::Null))] {
        let health = run("health.lua", &rollout).unwrap();
        assert_eq!(health["status"], "Progressing", "{name}");
        assert_eq!(health["message"], "the Sluice controller has not seen the latest spec yet (generation 2)", "{name}");
    }
}

#[test]
fn health_of_a_phase_it_does_not_know_is_unknown() {
    let rollout = fixture(with(status(RolloutPhase::Healthy, "?"), json!({"phase": "Exploded"})));
    assert_eq!(run("health.lua", &rollout).unwrap(), json!({"status": "Unknown", "message": "unknown Sluice phase Exploded"}));
}

/// The merge patch Argo CD sends for the object an action returned.
fn argocd_patch(action: &str, rollout: &Value) -> Result<Value, String> {
    run(&format!("actions/{action}/action.lua"), rollout).map(|after| merge_patch(rollout, &after))
}

#[test]
fn requests_are_the_ones_the_plugin_writes() {
    let mut compared = 0;
    for (name, rollout) in fixtures() {
        for (action, request) in REQUESTS {
            let typed = typed(&rollout);
            let Ok(revision) = target_revision(request, &typed) else { continue };
            let patch = argocd_patch(action, &rollout).unwrap_or_else(|e| panic!("{action} on {name}: {e}"));
            let text =
                patch["metadata"]["annotations"][COMMANDS_ANNOTATION].as_str().unwrap_or_else(|| panic!("{action} on {name}: {patch}"));
            let written = RolloutCommands::of(&[(COMMANDS_ANNOTATION.to_string(), text.to_string())].into())
                .unwrap_or_else(|e| panic!("{action} on {name}: the controller cannot read it: {e}"));
            let entry = match request {
                Request::Promote { .. } => written.promote.clone(),
                Request::Abort => written.abort.clone(),
                Request::Retry => written.retry.clone(),
            }
            .unwrap_or_else(|| panic!("{action} on {name}: no {} request in {text}", request.field()));
            // What the controller checks before it acts: the revision it is for, an id not handled yet.
            assert_eq!(entry.revision.as_deref(), Some(revision.as_str()), "{action} on {name}");
            let handled = typed.status.as_ref().and_then(|s| s.handled_commands.clone()).unwrap_or_default();
            assert_ne!(Some(&entry.id), handled.promote.as_ref(), "{action} on {name}: an id the controller has handled");
            // Byte for byte the plugin's annotation with the same id, and nothing else changed.
            let mut plugin = request_patch(&with_request(&typed, request, &entry.id, &revision), Some("4711"));
            plugin["metadata"].as_object_mut().unwrap().remove("resourceVersion");
            assert_eq!(patch, plugin, "{action} on {name}");
            compared += 1;
        }
    }
    assert!(compared >= 8, "only {compared} requests compared");
}

#[test]
fn a_request_replaces_an_earlier_one_of_its_kind_as_the_plugin_does() {
    let mut rollout = fixtures()[1].1.clone();
    rollout["metadata"]["annotations"] =
        json!({COMMANDS_ANNOTATION: r#"{"promote":{"id":"20260301T110000.000Z-00000001","revision":"bbbbbbbbbb"}}"#, "team": "shop"});
    let patch = argocd_patch("promote", &rollout).unwrap();
    let id = RolloutCommands::of(
        &[(COMMANDS_ANNOTATION.to_string(), patch["metadata"]["annotations"][COMMANDS_ANNOTATION].as_str().unwrap().to_string())].into(),
    )
    .unwrap()
    .promote
    .unwrap()
    .id;
    let mut plugin = request_patch(&with_request(&typed(&rollout), Request::Promote { full: false }, &id, "bbbbbbbbbb"), None);
    plugin["metadata"].as_object_mut().unwrap().remove("resourceVersion");
    assert_eq!(patch, plugin, "other annotations are left alone");
}

#[test]
fn actions_refuse_what_the_plugin_refuses() {
    for (name, rollout) in fixtures() {
        for (action, request) in REQUESTS {
            let plugin = target_revision(request, &typed(&rollout));
            let argocd = argocd_patch(action, &rollout);
            assert_eq!(argocd.is_err(), plugin.is_err(), "{action} on {name}: Argo CD {argocd:?}, plugin {plugin:?}");
        }
    }
    let refusal = argocd_patch("retry", &fixtures()[1].1).unwrap_err();
    assert!(refusal.contains("revision bbbbbbbbbb is not aborted: nothing to retry"), "{refusal}");
}

#[test]
fn ids_are_new_for_each_request() {
    let mut rollout = fixtures()[1].1.clone();
    let id = |rollout: &Value| {
        let patch = argocd_patch("promote", rollout).unwrap();
        let text = patch["metadata"]["annotations"][COMMANDS_ANNOTATION].as_str().unwrap().to_string();
        RolloutCommands::of(&[(COMMANDS_ANNOTATION.to_string(), text)].into()).unwrap().promote.unwrap().id
    };
    let first = id(&rollout);
    let (time, rest) = first.split_once('-').unwrap();
    assert_eq!(rest, "argocd-4711");
    let written = jiff::Timestamp::strptime("%Y%m%dT%H%M%S%z", format!("{}+0000", time.trim_end_matches('Z'))).unwrap();
    assert!((jiff::Timestamp::now() - written).get_seconds().abs() < 60, "{first}: not the time now");
    // The next request is made on the Rollout as that one left it: a newer resourceVersion.
    rollout["metadata"]["resourceVersion"] = json!("4712");
    assert_ne!(id(&rollout), first);
}

#[test]
fn pause_and_resume_write_spec_paused_as_the_plugin_does() {
    for (name, rollout) in fixtures() {
        for (action, paused) in [("pause", true), ("resume", false)] {
            let typed = typed(&rollout);
            let before = serde_json::to_value(&typed.spec).unwrap();
            let after = serde_json::to_value(set_paused(&typed, paused)).unwrap();
            let difference = merge_patch(&before, &after);
            let plugin = if difference == json!({}) { json!({}) } else { json!({"spec": difference}) };
            assert_eq!(argocd_patch(action, &rollout).unwrap(), plugin, "{action} on {name}");
        }
    }
    let paused = &fixtures()[2].1;
    assert_eq!(argocd_patch("resume", paused).unwrap(), json!({"spec": {"paused": null}}));
    assert_eq!(argocd_patch("pause", &fixtures()[1].1).unwrap(), json!({"spec": {"paused": true}}));
}

fn disabled(rollout: &Value) -> Vec<(String, bool)> {
    let actions = run("actions/discovery.lua", rollout).unwrap();
    let mut listed: Vec<(String, bool)> =
        actions.as_object().unwrap().iter().map(|(name, a)| (name.clone(), a["disabled"].as_bool().unwrap())).collect();
    listed.sort_by_key(|(name, _)| ACTIONS.iter().position(|a| a == name));
    listed
}

#[test]
fn discovery_disables_what_does_not_apply() {
    for (name, rollout) in fixtures() {
        let listed = disabled(&rollout);
        assert_eq!(listed.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ACTIONS, "{name}");
        let is_disabled = |action: &str| listed.iter().find(|(n, _)| n == action).unwrap().1;
        for (action, request) in REQUESTS {
            assert_eq!(is_disabled(action), target_revision(request, &typed(&rollout)).is_err(), "{action} on {name}");
        }
        let paused = rollout["spec"]["paused"] == json!(true);
        assert_eq!((is_disabled("pause"), is_disabled("resume")), (paused, !paused), "{name}");
    }
    let of = |name: &str| disabled(&fixtures().into_iter().find(|(n, _)| *n == name).unwrap().1);
    let flags = |pairs: &[(&str, bool)]| pairs.iter().map(|(n, d)| (n.to_string(), *d)).collect::<Vec<_>>();
    assert_eq!(
        of("paused"),
        flags(&[("promote", false), ("promote-full", false), ("abort", false), ("retry", true), ("pause", false), ("resume", true)])
    );
    assert_eq!(
        of("aborted"),
        flags(&[("promote", true), ("promote-full", true), ("abort", true), ("retry", false), ("pause", false), ("resume", true)])
    );
    assert_eq!(
        of("at rest"),
        flags(&[("promote", true), ("promote-full", true), ("abort", true), ("retry", true), ("pause", false), ("resume", true)])
    );
}

#[test]
fn the_test_sandbox_has_no_more_than_argo_cds() {
    let lua = argocd_lua();
    for missing in ["string", "math", "io", "debug", "os.exit", "os.getenv", "os.execute", "os.clock"] {
        let value: mlua::Value = lua.load(format!("return {missing}")).eval().unwrap();
        assert!(value.is_nil(), "{missing} is not in Argo CD's sandbox");
    }
    assert!(lua.load(r#"return ("x"):upper()"#).eval::<String>().is_err(), "strings have no methods without the string library");
    assert_eq!(lua.load(r#"return os.date("!%Y", 0)"#).eval::<String>().unwrap(), "1970");
}

/// argocd-cm.yaml as rendered from the Lua files.
fn render() -> String {
    fn indent(text: &str, by: usize) -> String {
        text.lines().map(|line| if line.is_empty() { "\n".to_string() } else { format!("{}{line}\n", " ".repeat(by)) }).collect()
    }
    let mut actions = String::from("discovery.lua: |\n");
    actions += &indent(&script("actions/discovery.lua"), 2);
    actions += "definitions:\n";
    for name in ACTIONS {
        actions += &format!("  - name: {name}\n    action.lua: |\n");
        actions += &indent(&script(&format!("actions/{name}/action.lua")), 6);
    }
    let mut out = String::from(
        "# The Argo CD health check and actions of sluice.dev Rollouts, for the argocd-cm ConfigMap\n\
         # (docs/argocd.md). Generated from the Lua files beside it: after changing one, run\n\
         # `SLUICE_WRITE_ARGOCD=1 cargo test --test argocd` to write this file again.\n\
         #\n\
         #   kubectl -n argocd patch configmap argocd-cm --type merge --patch-file deploy/argocd/argocd-cm.yaml\n\
         data:\n  resource.customizations.health.sluice.dev_Rollout: |\n",
    );
    out += &indent(&script("health.lua"), 4);
    out += "  resource.customizations.actions.sluice.dev_Rollout: |\n";
    out += &indent(&actions, 4);
    out
}

#[test]
fn argocd_cm_embeds_the_current_lua_files() {
    let path = format!("{DIR}/argocd-cm.yaml");
    let rendered = render();
    if std::env::var_os("SLUICE_WRITE_ARGOCD").is_some() {
        std::fs::write(&path, &rendered).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(committed == rendered, "deploy/argocd/argocd-cm.yaml is stale: run `SLUICE_WRITE_ARGOCD=1 cargo test --test argocd`");

    // Read as Argo CD reads it, each key holds the files byte for byte.
    let cm: Value = serde_saphyr::from_str(&committed).unwrap();
    assert_eq!(cm["data"]["resource.customizations.health.sluice.dev_Rollout"], json!(script("health.lua")));
    let actions: Value =
        serde_saphyr::from_str(cm["data"]["resource.customizations.actions.sluice.dev_Rollout"].as_str().unwrap()).unwrap();
    assert_eq!(actions["discovery.lua"], json!(script("actions/discovery.lua")));
    let definitions = actions["definitions"].as_array().unwrap();
    assert_eq!(definitions.iter().map(|d| d["name"].as_str().unwrap()).collect::<Vec<_>>(), ACTIONS);
    for definition in definitions {
        let name = definition["name"].as_str().unwrap();
        assert_eq!(definition["action.lua"], json!(script(&format!("actions/{name}/action.lua"))), "{name}");
    }
}
