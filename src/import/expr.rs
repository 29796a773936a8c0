//! Argo Rollouts' expr-lang conditions rewritten as Sluice's CEL, where the rewrite is purely
//! syntactic and so cannot change what the condition means. Anything else is kept as written
//! and reported.

/// The outcome of translating one condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Translation {
    /// Safe CEL with the same meaning.
    Cel(String),
    /// Kept as written; the reason says what could not be translated.
    Kept { expression: String, reason: String },
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Number {
        text: String,
        integer: bool,
    },
    Text(String),
    Ident(String),
    Op(&'static str),
    /// A character with no place in a translatable condition.
    Other(char),
}

const OPS: [&str; 18] = ["==", "!=", "<=", ">=", "&&", "||", "<", ">", "!", "+", "-", "*", "/", "(", ")", "[", "]", "."];

fn tokens(expression: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = expression.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.' || chars[i] == 'e' || chars[i] == 'E') {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            let integer = text.chars().all(|c| c.is_ascii_digit());
            out.push(Token::Number { text, integer });
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Token::Ident(chars[start..i].iter().collect()));
        } else if c == '"' || c == '\'' {
            let start = i;
            i += 1;
            while i < chars.len() && chars[i] != c {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            if i >= chars.len() {
                return Err("an unterminated string".into());
            }
            i += 1;
            out.push(Token::Text(chars[start..i].iter().collect()));
        } else {
            let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
            match OPS.iter().find(|op| rest.starts_with(**op)) {
                Some(op) => {
                    i += op.len();
                    out.push(Token::Op(op));
                }
                None => {
                    i += 1;
                    out.push(Token::Other(c));
                }
            }
        }
    }
    Ok(out)
}

/// Translates `expression`. With `single_series`, `result[0]` becomes `result`: Sluice hands a
/// one-series Prometheus answer to conditions as a number, where Argo hands a list.
pub fn translate_condition(expression: &str, single_series: bool) -> Translation {
    let kept = |reason: String| Translation::Kept { expression: expression.to_string(), reason };
    let tokens = match tokens(expression) {
        Ok(tokens) => tokens,
        Err(reason) => return kept(format!("it uses {reason}")),
    };
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i] {
            Token::Ident(word) => match word.as_str() {
                "and" => out.push("&&".into()),
                "or" => out.push("||".into()),
                "not" => out.push("!".into()),
                "true" | "false" => out.push(word.clone()),
                "nil" => out.push("null".into()),
                "result" => {
                    let (text, next) = match result_path(&tokens, i + 1, single_series) {
                        Ok(found) => found,
                        Err(reason) => return kept(reason),
                    };
                    out.push(text);
                    i = next;
                    continue;
                }
                other => return kept(format!("it uses `{other}`, which has no safe CEL equivalent")),
            },
            // Sluice's measured numbers are doubles, and CEL does not compare a double with an int.
            Token::Number { text, integer: true } => out.push(format!("{text}.0")),
            Token::Number { text, .. } => out.push(text.clone()),
            Token::Text(text) => out.push(text.clone()),
            Token::Op(op @ ("[" | "]" | ".")) => return kept(format!("it uses `{op}` outside a path into result")),
            Token::Op(op) => out.push((*op).to_string()),
            Token::Other(c) => return kept(format!("it uses `{c}`, which has no safe CEL equivalent")),
        }
        i += 1;
    }
    let cel = out.join(" ").replace("( ", "(").replace(" )", ")").replace("! ", "!");
    match crate::analysis::condition::check(&cel) {
        Ok(()) => Translation::Cel(cel),
        Err(e) => kept(format!("its CEL form does not parse ({e})")),
    }
}

/// `result` followed by `[n]`, `["key"]` or `.field` accessors; returns the CEL text and the
/// index of the next token.
fn result_path(tokens: &[Token], mut i: usize, single_series: bool) -> Result<(String, usize), String> {
    let mut text = "result".to_string();
    let mut first = true;
    loop {
        match (tokens.get(i), tokens.get(i + 1), tokens.get(i + 2)) {
            (Some(Token::Op("[")), Some(Token::Number { text: n, integer: true }), Some(Token::Op("]"))) => {
                if !(first && single_series && n == "0") {
                    text.push_str(&format!("[{n}]"));
                }
                i += 3;
            }
            (Some(Token::Op("[")), Some(Token::Text(key)), Some(Token::Op("]"))) => {
                text.push_str(&format!("[{key}]"));
                i += 3;
            }
            (Some(Token::Op(".")), Some(Token::Ident(field)), _) => {
                text.push_str(&format!(".{field}"));
                i += 2;
            }
            (Some(Token::Op("[")), _, _) => return Err("it indexes result with something other than a number or a key".into()),
            _ => return Ok((text, i)),
        }
        first = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cel(expression: &str) -> String {
        match translate_condition(expression, true) {
            Translation::Cel(cel) => cel,
            kept => panic!("{expression} was not translated: {kept:?}"),
        }
    }

    #[test]
    fn comparisons_on_the_first_series_become_comparisons_on_the_number() {
        assert_eq!(cel("result[0] >= 0.95"), "result >= 0.95");
        assert_eq!(cel("result[0] < 1"), "result < 1.0");
        assert_eq!(cel("result[0] >= 0.9 and result[0] <= 1.5"), "result >= 0.9 && result <= 1.5");
        assert_eq!(cel("not (result[0] > 5)"), "!(result > 5.0)");
    }

    #[test]
    fn paths_into_json_answers_are_kept() {
        assert_eq!(cel("result.ok == true"), "result.ok == true");
        assert_eq!(cel("result['status'] == 'green' || result.rate > 0.5"), "result['status'] == 'green' || result.rate > 0.5");
        let Translation::Cel(web) = translate_condition("result[0] == 1", false) else { panic!("not translated") };
        assert_eq!(web, "result[0] == 1.0", "only a Prometheus answer is one number");
    }

    #[test]
    fn functions_closures_and_unknown_names_are_kept_with_a_reason() {
        for (expression, reason) in [
            ("len(result) == 0 || result[0] < 0.5", "`len`"),
            ("all(result, {# > 0.9})", "`all`"),
            ("isNaN(result[0]) || result[0] > 0.9", "`isNaN`"),
            ("result[0] > threshold", "`threshold`"),
            ("result[0] ?? 0 > 1", "`?`"),
        ] {
            match translate_condition(expression, true) {
                Translation::Kept { expression: kept, reason: why } => {
                    assert_eq!(kept, expression);
                    assert!(why.contains(reason), "{expression}: {why}");
                }
                other => panic!("{expression} should be kept, got {other:?}"),
            }
        }
    }

    #[test]
    fn translated_conditions_judge_as_argo_would() {
        use crate::analysis::condition::{MeasuredValue, judge};
        use crate::api::AnalysisPhase;
        let success = cel("result[0] >= 0.95");
        assert_eq!(judge(Some(&success), None, &MeasuredValue::scalar(0.97)), Ok(AnalysisPhase::Successful));
        assert_eq!(judge(Some(&success), None, &MeasuredValue::scalar(0.5)), Ok(AnalysisPhase::Failed));
        let failure = cel("result[0] > 10");
        assert_eq!(judge(None, Some(&failure), &MeasuredValue::scalar(11.0)), Ok(AnalysisPhase::Failed));
    }
}
