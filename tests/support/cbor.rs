//! A bridge between the AWS SDK's CloudWatch protocol and moto's.
//!
//! The Rust SDK speaks CloudWatch's Smithy RPC v2 CBOR protocol (POST
//! `/service/GraniteServiceVersion20100801/operation/<Op>`, CBOR bodies); moto's server routes
//! only CloudWatch's JSON and query protocols. This local server takes the SDK's CBOR request,
//! sends the same document to moto as awsJson 1.0 (`X-Amz-Target`), and answers moto's JSON as
//! CBOR. The request and answer documents are the same shapes in both protocols; only timestamps
//! differ (CBOR tag 1), and those are the members whose names end in `Timestamp(s)`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Map, Number, Value};

use super::server::Server;

const SERVICE: &str = "GraniteServiceVersion20100801";

struct Target {
    moto: String,
    http: reqwest::Client,
}

/// Starts the bridge in front of moto; point the SDK's `endpoint_url` at its address.
pub async fn bridge(moto: &str) -> Server {
    let target = Arc::new(Target { moto: moto.trim_end_matches('/').to_string(), http: reqwest::Client::new() });
    let router = Router::new().route(&format!("/service/{SERVICE}/operation/{{operation}}"), post(forward)).with_state(target);
    Server::start(router).await
}

async fn forward(State(target): State<Arc<Target>>, Path(operation): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let document = if body.is_empty() { Value::Object(Map::new()) } else { decode(&body).expect("the SDK sends valid CBOR") };
    let mut request = target
        .http
        .post(format!("{}/", target.moto))
        .header("content-type", "application/x-amz-json-1.0")
        .header("x-amz-target", format!("{SERVICE}.{operation}"))
        .body(document.to_string());
    if let Some(authorization) = headers.get("authorization") {
        // moto reads the region from the credential scope; it checks no signature.
        request = request.header("authorization", authorization.clone());
    }
    let answer = request.send().await.expect("moto answers");
    let status = StatusCode::from_u16(answer.status().as_u16()).expect("a status");
    let text = answer.text().await.unwrap_or_default();
    let value: Value =
        if text.trim().is_empty() { Value::Object(Map::new()) } else { serde_json::from_str(&text).expect("moto answers JSON") };
    let mut out = Vec::new();
    encode(&mut out, &value, false);
    (status, [("content-type", "application/cbor"), ("smithy-protocol", "rpc-v2-cbor")], out).into_response()
}

/// Decodes one CBOR data item into JSON (tags are dropped: a timestamp becomes its number).
pub fn decode(bytes: &[u8]) -> Result<Value, String> {
    let mut reader = Reader { bytes, at: 0 };
    let value = reader.item()?;
    if reader.at != bytes.len() {
        return Err(format!("{} bytes after the item", bytes.len() - reader.at));
    }
    Ok(value)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let slice = self.bytes.get(self.at..self.at + n).ok_or("CBOR ends early")?;
        self.at += n;
        Ok(slice)
    }

    fn byte(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    /// The argument of an initial byte; `None` for an indefinite length.
    fn argument(&mut self, info: u8) -> Result<Option<u64>, String> {
        Ok(Some(match info {
            0..=23 => u64::from(info),
            24 => u64::from(self.byte()?),
            25 => u64::from(u16::from_be_bytes(self.take(2)?.try_into().unwrap())),
            26 => u64::from(u32::from_be_bytes(self.take(4)?.try_into().unwrap())),
            27 => u64::from_be_bytes(self.take(8)?.try_into().unwrap()),
            31 => return Ok(None),
            _ => return Err(format!("reserved additional information {info}")),
        }))
    }

    fn at_break(&mut self) -> bool {
        if self.bytes.get(self.at) == Some(&0xff) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn item(&mut self) -> Result<Value, String> {
        let initial = self.byte()?;
        let (major, info) = (initial >> 5, initial & 0x1f);
        if major == 7 {
            return Ok(match info {
                20 => Value::Bool(false),
                21 => Value::Bool(true),
                22 | 23 => Value::Null,
                25 => float(half(u16::from_be_bytes(self.take(2)?.try_into().unwrap()))),
                26 => float(f64::from(f32::from_be_bytes(self.take(4)?.try_into().unwrap()))),
                27 => float(f64::from_be_bytes(self.take(8)?.try_into().unwrap())),
                _ => return Err(format!("unsupported simple value {info}")),
            });
        }
        let argument = self.argument(info)?;
        match (major, argument) {
            (0, Some(n)) => Ok(Value::Number(n.into())),
            (1, Some(n)) => Ok(Value::Number((-1 - i64::try_from(n).map_err(|_| "integer too small")?).into())),
            (3, Some(n)) => {
                let n = usize::try_from(n).map_err(|_| "text too long")?;
                Ok(Value::String(String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "text is not UTF-8")?))
            }
            (3, None) => {
                let mut text = String::new();
                while !self.at_break() {
                    match self.item()? {
                        Value::String(chunk) => text.push_str(&chunk),
                        other => return Err(format!("a text chunk expected, got {other}")),
                    }
                }
                Ok(Value::String(text))
            }
            (4, length) => {
                let mut items = Vec::new();
                match length {
                    Some(n) => {
                        for _ in 0..n {
                            items.push(self.item()?);
                        }
                    }
                    None => {
                        while !self.at_break() {
                            items.push(self.item()?);
                        }
                    }
                }
                Ok(Value::Array(items))
            }
            (5, length) => {
                let mut map = Map::new();
                let mut entry = |reader: &mut Self| -> Result<(), String> {
                    let Value::String(key) = reader.item()? else { return Err("a map key that is not text".into()) };
                    let value = reader.item()?;
                    map.insert(key, value);
                    Ok(())
                };
                match length {
                    Some(n) => {
                        for _ in 0..n {
                            entry(self)?;
                        }
                    }
                    None => {
                        while !self.at_break() {
                            entry(self)?;
                        }
                    }
                }
                Ok(Value::Object(map))
            }
            (6, Some(_tag)) => self.item(),
            (major, _) => Err(format!("unsupported CBOR major type {major}")),
        }
    }
}

fn float(x: f64) -> Value {
    Number::from_f64(x).map_or(Value::Null, Value::Number)
}

/// An IEEE 754 half-precision float.
fn half(bits: u16) -> f64 {
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exponent = i32::from((bits >> 10) & 0x1f);
    let fraction = f64::from(bits & 0x3ff);
    sign * match exponent {
        0 => fraction * 2f64.powi(-24),
        31 => {
            if fraction == 0.0 {
                f64::INFINITY
            } else {
                f64::NAN
            }
        }
        e => (1.0 + fraction / 1024.0) * 2f64.powi(e - 15),
    }
}

fn head(out: &mut Vec<u8>, major: u8, n: u64) {
    let major = major << 5;
    match n {
        0..=23 => out.push(major | n as u8),
        24..=0xff => out.extend([major | 24, n as u8]),
        0x100..=0xffff => {
            out.push(major | 25);
            out.extend((n as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(major | 26);
            out.extend((n as u32).to_be_bytes());
        }
        _ => {
            out.push(major | 27);
            out.extend(n.to_be_bytes());
        }
    }
}

/// Encodes JSON as CBOR; numbers under a `…Timestamp(s)` member become tag-1 epoch seconds.
pub fn encode(out: &mut Vec<u8>, value: &Value, timestamp: bool) {
    match value {
        Value::Null => out.push(0xf6),
        Value::Bool(b) => out.push(if *b { 0xf5 } else { 0xf4 }),
        Value::Number(number) if timestamp => {
            head(out, 6, 1);
            out.push(0xfb);
            out.extend(number.as_f64().unwrap_or_default().to_be_bytes());
        }
        Value::Number(number) => match (number.as_u64(), number.as_i64()) {
            (Some(n), _) => head(out, 0, n),
            (None, Some(n)) => head(out, 1, (-1 - n) as u64),
            _ => {
                out.push(0xfb);
                out.extend(number.as_f64().unwrap_or_default().to_be_bytes());
            }
        },
        Value::String(text) => {
            head(out, 3, text.len() as u64);
            out.extend(text.as_bytes());
        }
        Value::Array(items) => {
            head(out, 4, items.len() as u64);
            for item in items {
                encode(out, item, timestamp);
            }
        }
        Value::Object(map) => {
            head(out, 5, map.len() as u64);
            for (key, item) in map {
                head(out, 3, key.len() as u64);
                out.extend(key.as_bytes());
                encode(out, item, key.ends_with("Timestamp") || key.ends_with("Timestamps"));
            }
        }
    }
}
