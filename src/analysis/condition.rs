//! successCondition / failureCondition: CEL expressions over `result`.

use cel::{Context, Program, Value};

use crate::api::AnalysisPhase;

/// What a provider measured.
#[derive(Clone, Debug, PartialEq)]
pub enum MeasuredValue {
    /// The query answered with nothing (no series, empty body): never a success.
    NoData,
    /// A number, a vector of numbers, or any JSON document (web provider).
    Json(serde_json::Value),
}

impl MeasuredValue {
    /// A number. Numbers are doubles in conditions: write `result == 1.0`, not `result == 1`.
    pub fn scalar(value: f64) -> Self {
        Self::Json(serde_json::json!(value))
    }

    pub fn vector(values: Vec<f64>) -> Self {
        if values.is_empty() { Self::NoData } else { Self::Json(serde_json::json!(values)) }
    }

    /// The value as recorded in an AnalysisRun.
    pub fn display(&self) -> Option<String> {
        match self {
            Self::NoData => None,
            Self::Json(value) => Some(value.to_string()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConditionError {
    #[error("condition `{expression}` does not parse: {reason}")]
    Parse { expression: String, reason: String },
    #[error("condition `{expression}` failed on result {value}: {reason}")]
    Evaluate { expression: String, value: String, reason: String },
    #[error("condition `{expression}` must be true or false, got {got}")]
    NotBoolean { expression: String, got: String },
}

/// Refuses expressions that do not parse, so a bad template is reported before it is run.
pub fn check(expression: &str) -> Result<(), ConditionError> {
    Program::compile(expression)
        .map(|_| ())
        .map_err(|e| ConditionError::Parse { expression: expression.to_string(), reason: e.to_string() })
}

/// The phase of one measurement. Both conditions: failure wins, then success, else Inconclusive.
/// Success only: false fails. Failure only: false succeeds. No data is Inconclusive whatever the
/// conditions say.
pub fn judge(success: Option<&str>, failure: Option<&str>, value: &MeasuredValue) -> Result<AnalysisPhase, ConditionError> {
    let MeasuredValue::Json(json) = value else {
        return Ok(AnalysisPhase::Inconclusive);
    };
    let failed = failure.map(|expr| holds(expr, json)).transpose()?;
    let succeeded = success.map(|expr| holds(expr, json)).transpose()?;
    Ok(match (succeeded, failed) {
        (_, Some(true)) => AnalysisPhase::Failed,
        (Some(true), _) => AnalysisPhase::Successful,
        (Some(false), Some(false)) => AnalysisPhase::Inconclusive,
        (Some(false), None) => AnalysisPhase::Failed,
        (None, Some(false)) | (None, None) => AnalysisPhase::Successful,
    })
}

fn holds(expression: &str, result: &serde_json::Value) -> Result<bool, ConditionError> {
    let program =
        Program::compile(expression).map_err(|e| ConditionError::Parse { expression: expression.to_string(), reason: e.to_string() })?;
    let mut context = Context::default();
    let value = cel::to_value(result).map_err(|e| ConditionError::Evaluate {
        expression: expression.to_string(),
        value: result.to_string(),
        reason: e.to_string(),
    })?;
    context.add_variable_from_value("result", value);
    match program.execute(&context) {
        Ok(Value::Bool(b)) => Ok(b),
        Ok(other) => Err(ConditionError::NotBoolean { expression: expression.to_string(), got: format!("{other:?}") }),
        Err(e) => Err(ConditionError::Evaluate { expression: expression.to_string(), value: result.to_string(), reason: e.to_string() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AnalysisPhase::*;

    #[test]
    fn scalar_conditions_compare_across_number_types() {
        let low = MeasuredValue::scalar(0.004);
        assert_eq!(judge(Some("result < 0.01"), None, &low), Ok(Successful));
        assert_eq!(judge(Some("result < 1"), None, &low), Ok(Successful));
        assert_eq!(judge(Some("result < 0.001"), None, &low), Ok(Failed));
        assert_eq!(judge(None, Some("result > 0.01"), &low), Ok(Successful));
        assert_eq!(judge(Some("result < 0.001"), Some("result > 0.01"), &low), Ok(Inconclusive));
        assert_eq!(judge(Some("result < 0.01"), Some("result >= 0.004"), &low), Ok(Failed), "failure wins");
    }

    #[test]
    fn vectors_and_documents() {
        let v = MeasuredValue::vector(vec![0.1, 0.2]);
        assert_eq!(judge(Some("result.all(x, x < 0.5)"), None, &v), Ok(Successful));
        assert_eq!(judge(Some("result[1] < 0.15"), None, &v), Ok(Failed));
        let doc = MeasuredValue::Json(serde_json::json!({"status": "ok", "p99": 120}));
        assert_eq!(judge(Some("result.status == 'ok' && result.p99 < 200"), None, &doc), Ok(Successful));
    }

    #[test]
    fn no_data_is_inconclusive_even_without_conditions() {
        assert_eq!(judge(None, None, &MeasuredValue::NoData), Ok(Inconclusive));
        assert_eq!(judge(None, Some("result > 1"), &MeasuredValue::vector(vec![])), Ok(Inconclusive));
    }

    #[test]
    fn bad_expressions_are_errors_not_panics() {
        assert!(matches!(check("result <"), Err(ConditionError::Parse { .. })));
        assert!(matches!(judge(Some("result + 'x'"), None, &MeasuredValue::scalar(1.0)), Err(ConditionError::Evaluate { .. })));
        assert!(matches!(judge(Some("result"), None, &MeasuredValue::scalar(1.0)), Err(ConditionError::NotBoolean { .. })));
        assert!(matches!(judge(Some("missing < 1"), None, &MeasuredValue::scalar(1.0)), Err(ConditionError::Evaluate { .. })));
    }
}

#[cfg(test)]
mod equality {
    use super::*;

    /// Numbers are doubles: `==` wants a double literal, ordering compares across types.
    #[test]
    fn numbers_are_doubles() {
        assert_eq!(judge(Some("result == 1.0"), None, &MeasuredValue::scalar(1.0)), Ok(AnalysisPhase::Successful));
        assert_eq!(judge(Some("result >= 1"), None, &MeasuredValue::scalar(1.0)), Ok(AnalysisPhase::Successful));
    }
}
