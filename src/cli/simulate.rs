use std::path::Path;

use super::load_manifests;
use crate::simulate::{self, Scenario};

pub fn run(file: &Path, scenario: Option<&Path>) -> Result<(), String> {
    let read = |path: &Path| std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()));
    let manifests = load_manifests(&read(file)?).map_err(|e| format!("{}: {e}", file.display()))?;
    let [rollout] = manifests.rollouts.as_slice() else {
        return Err(format!("{}: expected exactly one Rollout, found {}", file.display(), manifests.rollouts.len()));
    };
    let scenario: Scenario = match scenario {
        Some(path) => serde_saphyr::from_str(&read(path)?).map_err(|e| format!("{}: {e}", path.display()))?,
        None => Scenario::default(),
    };
    let timeline = simulate::run(rollout, manifests.templates, &scenario).map_err(|e| e.to_string())?;
    print!("{}", timeline.render());
    Ok(())
}
