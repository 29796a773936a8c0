//! successCondition / failureCondition: CEL expressions over `result`.
//!
//! CEL has no cost limit of its own, so expressions are bounded when checked (length, and no
//! comprehension inside another: the time of one is linear in `result`), and evaluated off the
//! async workers, on at most [`EVALUATORS`] threads, under [`DEADLINE`].

use std::time::{Duration, Instant};

use cel::common::ast::{EntryExpr, Expr, IdedExpr};
use cel::{Context, Program, Value};

use crate::api::AnalysisPhase;

/// The longest condition, in bytes.
pub const MAX_EXPRESSION: usize = 1024;
/// Comprehensions (`all`, `exists`, `exists_one`, `map`, `filter`) in one condition.
pub const MAX_COMPREHENSIONS: usize = 4;
/// How long a condition may take to evaluate.
pub const DEADLINE: Duration = Duration::from_millis(100);
/// Threads evaluating conditions at once; one that overruns its deadline keeps its thread until it
/// ends, so runaway conditions take at most these.
pub const EVALUATORS: usize = 2;
/// How much of a result an error message quotes.
const QUOTED: usize = 512;

/// What a provider measured.
#[derive(Clone, Debug, PartialEq)]
pub enum MeasuredValue {
    /// The query answered with nothing (no series, empty body): never a success.
    NoData,
    /// A number, a vector of numbers, or any JSON document (web provider).
    Json(serde_json::Value),
    /// Not decided yet (a Lambda hook answered IN_PROGRESS, a Job still runs): the same
    /// measurement is taken up again after `retry_after`, given back what it `carried`.
    InProgress { retry_after: std::time::Duration, carried: Option<serde_json::Value>, note: String },
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
            Self::InProgress { carried, .. } => carried.as_ref().map(|value| value.to_string()),
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
    #[error("a condition is {length} bytes; the limit is {MAX_EXPRESSION}: shorten it")]
    TooLong { length: usize },
    #[error("condition `{expression}` is too costly to evaluate: {reason}")]
    TooCostly { expression: String, reason: String },
    #[error("conditions were not evaluated within {}: {reason}; simplify them", crate::api::format_duration(*deadline))]
    Overran { deadline: Duration, reason: &'static str },
}

/// Refuses expressions that do not parse or that could take long, so a bad template is reported
/// before it is run.
pub fn check(expression: &str) -> Result<(), ConditionError> {
    if expression.len() > MAX_EXPRESSION {
        return Err(ConditionError::TooLong { length: expression.len() });
    }
    let program =
        Program::compile(expression).map_err(|e| ConditionError::Parse { expression: expression.to_string(), reason: e.to_string() })?;
    let costly = |reason: String| ConditionError::TooCostly { expression: expression.to_string(), reason };
    let mut comprehensions = 0;
    walk(program.expression(), 0, &mut comprehensions).map_err(costly)?;
    if comprehensions > MAX_COMPREHENSIONS {
        return Err(costly(format!("{comprehensions} comprehensions (all, exists, map, filter...); the limit is {MAX_COMPREHENSIONS}")));
    }
    Ok(())
}

/// Counts comprehensions, refusing one inside another (their cost multiplies).
fn walk(node: &IdedExpr, inside: usize, comprehensions: &mut usize) -> Result<(), String> {
    let children: Vec<&IdedExpr> = match &node.expr {
        Expr::Comprehension(comprehension) => {
            if inside > 0 {
                return Err("a comprehension (all, exists, map, filter...) inside another; use one at a time".into());
            }
            let c = comprehension.as_ref();
            *comprehensions += 1;
            walk(&c.iter_range, inside, comprehensions)?;
            for part in [&c.accu_init, &c.loop_cond, &c.loop_step, &c.result] {
                walk(part, inside + 1, comprehensions)?;
            }
            return Ok(());
        }
        Expr::Call(call) => call.target.iter().map(|t| t.as_ref()).chain(&call.args).collect(),
        Expr::List(list) => list.elements.iter().collect(),
        Expr::Map(map) => map.entries.iter().flat_map(|e| entry(&e.expr)).collect(),
        Expr::Struct(structure) => structure.entries.iter().flat_map(|e| entry(&e.expr)).collect(),
        Expr::Select(select) => vec![select.operand.as_ref()],
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => Vec::new(),
    };
    children.into_iter().try_for_each(|child| walk(child, inside, comprehensions))
}

fn entry(entry: &EntryExpr) -> Vec<&IdedExpr> {
    match entry {
        EntryExpr::StructField(field) => vec![&field.value],
        EntryExpr::MapEntry(pair) => vec![&pair.key, &pair.value],
    }
}

static EVALUATING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(EVALUATORS);

/// Runs `evaluate` (conditions) on a blocking thread, never on the async workers, and gives up
/// waiting after `deadline`.
pub async fn bounded<T: Send + 'static>(deadline: Duration, evaluate: impl FnOnce() -> T + Send + 'static) -> Result<T, ConditionError> {
    let started = Instant::now();
    let permit = tokio::time::timeout(deadline, EVALUATING.acquire())
        .await
        .map_err(|_| ConditionError::Overran { deadline, reason: "every evaluator is busy with conditions that overran" })?
        .expect("the semaphore is never closed");
    let task = tokio::task::spawn_blocking(move || {
        let _held = permit;
        evaluate()
    });
    match tokio::time::timeout(deadline.saturating_sub(started.elapsed()), task).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(_)) => Err(ConditionError::Overran { deadline, reason: "the evaluation failed" }),
        Err(_) => Err(ConditionError::Overran { deadline, reason: "they took too long" }),
    }
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
    let quoted = || crate::text::truncate(&result.to_string(), QUOTED);
    let value = cel::to_value(result).map_err(|e| ConditionError::Evaluate {
        expression: expression.to_string(),
        value: quoted(),
        reason: e.to_string(),
    })?;
    context.add_variable_from_value("result", value);
    match program.execute(&context) {
        Ok(Value::Bool(b)) => Ok(b),
        Ok(other) => Err(ConditionError::NotBoolean { expression: expression.to_string(), got: format!("{other:?}") }),
        Err(e) => Err(ConditionError::Evaluate { expression: expression.to_string(), value: quoted(), reason: e.to_string() }),
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
mod limits {
    use super::*;

    /// Three nested comprehensions over 300 elements: 27 million steps.
    fn bomb() -> String {
        let list = format!("[{}]", (0..300).map(|i| i.to_string()).collect::<Vec<_>>().join(","));
        format!("{list}.all(x, {list}.all(y, !{list}.exists(z, x + y + z < 0)))")
    }

    #[test]
    fn nested_comprehensions_long_and_many_are_refused_when_checked() {
        let nested = "result.all(x, result.exists(y, x < y))";
        let error = check(nested).unwrap_err();
        assert!(error.to_string().contains("inside another"), "{error}");
        let error = check(&bomb()).unwrap_err();
        assert!(matches!(error, ConditionError::TooLong { .. }), "{error}");
        let short_bomb = "[1,2,3].all(x, [1,2].map(y, y).size() > 0)";
        assert!(check(short_bomb).is_err());
        let many = ["result.all(x, x > 0)"; 5].join(" && ");
        assert!(check(&many).unwrap_err().to_string().contains("5 comprehensions"));
        assert_eq!(check("result.all(x, x < 0.5) && result.exists(x, x > 0.1) && size(result) > 2"), Ok(()));
        assert_eq!(check("result.verdict == 'Pass' && {'a': [1, 2]}.a.size() == 2"), Ok(()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_condition_that_overruns_is_an_error_and_the_runtime_keeps_serving() {
        let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counter = ticks.clone();
        let ticker = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(5)).await;
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
        let started = Instant::now();
        let bomb = bomb();
        let outcome = bounded(DEADLINE, move || judge(Some(&bomb), None, &MeasuredValue::scalar(1.0))).await;
        let waited = started.elapsed();
        assert!(matches!(outcome, Err(ConditionError::Overran { .. })), "{outcome:?}");
        assert!(outcome.unwrap_err().to_string().contains("not evaluated within 100ms"));
        assert!(waited < DEADLINE * 3, "gave up at the deadline, waited {waited:?}");
        let before = ticks.load(std::sync::atomic::Ordering::Relaxed);
        assert!(before >= 5, "the runtime kept serving while the condition ran: {before} ticks");
        ticker.abort();
        let quick = bounded(DEADLINE, || judge(Some("result < 2.0"), None, &MeasuredValue::scalar(1.0))).await;
        assert_eq!(quick.unwrap(), Ok(AnalysisPhase::Successful));

        // Within every bound `check` places (short, one comprehension), and still quadratic in
        // `result`: `in` scans the whole list for each element, 400 million comparisons here
        // (5,000 numbers, 25 million, can finish within the deadline on an idle machine).
        // The deadline is what ends it. (The e2e test runs it through a Rollout.)
        let quadratic = "result.all(x, !(x + 0.5 in result))";
        assert_eq!(check(quadratic), Ok(()));
        let numbers = MeasuredValue::vector((0..20_000).map(f64::from).collect());
        let started = Instant::now();
        let outcome = bounded(DEADLINE, move || judge(Some(quadratic), None, &numbers)).await;
        assert!(matches!(outcome, Err(ConditionError::Overran { .. })), "{outcome:?}");
        assert!(started.elapsed() < DEADLINE * 3, "gave up at the deadline, waited {:?}", started.elapsed());
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
