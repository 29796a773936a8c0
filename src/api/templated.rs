//! Analysis fields that may name an argument (`{{args.NAME}}`) instead of a value, as Argo's do;
//! the argument's value takes its place when the AnalysisRun is built.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// The form an argument reference takes in a typed field: the whole value is `{{args.NAME}}`.
pub const ARG_REFERENCE_PATTERN: &str = r"^\{\{args\.[A-Za-z0-9_.-]+\}\}$";
/// The longest argument reference a typed field holds.
const MAX_REFERENCE: usize = 80;

/// A whole number, or `{{args.NAME}}` for one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IntOrArg {
    Int(i32),
    Arg(String),
}

impl IntOrArg {
    /// The number, once no argument is left to replace.
    pub fn value(&self) -> Option<i32> {
        match self {
            Self::Int(n) => Some(*n),
            Self::Arg(_) => None,
        }
    }
}

impl From<i32> for IntOrArg {
    fn from(value: i32) -> Self {
        Self::Int(value)
    }
}

impl JsonSchema for IntOrArg {
    fn schema_name() -> Cow<'static, str> {
        "IntOrArg".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        // The range is each field's own rule; the string form is checked there too.
        json_schema!({
            "x-kubernetes-int-or-string": true,
            "maxLength": MAX_REFERENCE,
            "description": "A whole number, or `{{args.NAME}}` replaced by the argument's value when the run is built."
        })
    }

    fn inline_schema() -> bool {
        true
    }
}

/// The CEL rule of an [`IntOrArg`] field: an argument reference, or a number from `min`. The
/// API server cannot bound an int-or-string's length when it prices a rule, so the reference is
/// checked by its ends only (a regular expression would exceed the cost budget); building the
/// run reads the rest. Kube's client-side CEL has no `type()`: tests/e2e holds the API server
/// to this rule.
pub(super) fn int_or_arg_rule(min: i32) -> String {
    format!("type(self) == string ? self.startsWith('{{{{args.') && self.endsWith('}}}}') : self >= {min}")
}

/// The schema of a duration field that may also be `{{args.NAME}}`.
pub(super) fn duration_or_arg(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = crate::api::DurationString::json_schema(generator);
    let duration = crate::api::DURATION_PATTERN.trim_start_matches('^').trim_end_matches('$');
    let reference = ARG_REFERENCE_PATTERN.trim_start_matches('^').trim_end_matches('$');
    schema.insert("pattern".into(), format!("^({duration}|{reference})$").into());
    schema.insert("maxLength".into(), MAX_REFERENCE.into());
    // `schema_with` replaces what an `Option` field would get: admit null as before.
    schema.insert("nullable".into(), true.into());
    if let Some(rules) = schema.get_mut("x-kubernetes-validations").and_then(|r| r.as_array_mut()) {
        for rule in rules {
            let text = rule["rule"].as_str().unwrap_or_default().to_string();
            rule["rule"] = format!("self.startsWith('{{{{') || {text}").into();
        }
    }
    schema.insert(
        "description".into(),
        "A duration such as 30s, 5m or 1h30m (units: ms, s, m, h), at most 8760h, or `{{args.NAME}}` for one.".into(),
    );
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_numbers_and_references() {
        let read: Vec<IntOrArg> = serde_json::from_str(r#"[3, "{{args.count}}"]"#).unwrap();
        assert_eq!(read, [IntOrArg::Int(3), IntOrArg::Arg("{{args.count}}".into())]);
        assert_eq!((read[0].value(), read[1].value()), (Some(3), None));
        assert_eq!(serde_json::to_string(&read).unwrap(), r#"[3,"{{args.count}}"]"#);
    }

    #[test]
    fn the_reference_pattern_admits_what_substitution_replaces() {
        let pattern = regex::Regex::new(ARG_REFERENCE_PATTERN).unwrap();
        for admitted in ["{{args.count}}", "{{args.failure-limit}}", "{{args.a_b.c}}"] {
            assert!(pattern.is_match(admitted), "{admitted}");
        }
        for refused in ["5", "{{args.}}", "{{count}}", "x{{args.count}}", "{{args.count}}s", "{{ args.count }}"] {
            assert!(!pattern.is_match(refused), "{refused}");
        }
    }
}
