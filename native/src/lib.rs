//! Events in the strict form, checked and encoded in one compiled pass: POST /batch's
//! items, and single events.
//!
//! `relay/ingest/compiled.py` builds a `Checker` from the event table (`relay/events.py`,
//! the one source of the types and their fields) and offers it each batch's bytes
//! (`check`) and each single event's body (`check_record`, as for one item, which also
//! makes the event's id and record headers).
//! The checker either takes the whole batch, giving for every item what its record
//! needs (the key, the normalised body as JSON, the clip id, why its timestamp was
//! stamped), or declines it (`None`) and the batch takes the Python path, which
//! checks anything and words every refusal. It takes a batch only when every item
//! is in the strict form, where `normalise` would return the body as sent (in the
//! table's order) or stamp its timestamp: ids as JSON integers, booleans as JSON
//! booleans, methods spelled as in the table, text of printable ASCII, timestamps in
//! UTC with `Z` and no fraction or three digits, no unknown field, no
//! `idempotencyKey`, no type whose answer comes from the upstream. Anything else,
//! valid or not, is the Python path's to judge: declining is always safe, taking a
//! batch must give exactly what `normalise` gives (tests/ingest/test_compiled.py
//! compares the two on generated bodies).

use std::borrow::Cow;
use std::fmt;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};
use serde::de::{Deserialize, Deserializer, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};

const US_PER_S: i64 = 1_000_000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    ClientId,
    Text,
    Integer,
    Boolean,
    Method,
    Timestamp,
    Country,
}

impl Kind {
    fn parse(name: &str) -> PyResult<Kind> {
        Ok(match name {
            "client_id" => Kind::ClientId,
            "text" => Kind::Text,
            "integer" => Kind::Integer,
            "boolean" => Kind::Boolean,
            "method" => Kind::Method,
            "timestamp" => Kind::Timestamp,
            "country" => Kind::Country,
            other => {
                return Err(PyValueError::new_err(format!(
                    "unknown field kind {other:?}"
                )))
            }
        })
    }
}

struct Field {
    name: String,
    kind: Kind,
    required: bool,
    min_length: usize,
    max_length: usize,
}

struct EventType {
    name: String,
    fields: Vec<Field>,
    taken: bool, // false: its items always take the Python path
}

/// Why a timestamp became the receive time (0: it did not).
const STAMPED_MISSING: u8 = 1;
const STAMPED_IMPLAUSIBLE: u8 = 2;

/// One item, checked: what its record needs.
struct Checked {
    type_index: usize,
    key: Vec<u8>,
    value: Vec<u8>,
    clip_id: Option<u64>,
    stamped: u8,
}

#[pyclass(frozen)]
struct Checker {
    types: Vec<EventType>,
    methods: Vec<String>,
    method_needing_timestamp: String,
    key_field: String,
    clip_field: String,
    max_id: u64,
    earliest_us: i64,
    ahead_us: i64,
    id_header: Py<PyString>, // the record header of the event's id (envelope v2)
    clip_header: Py<PyString>, // and of its clip id
}

type FieldRow = (String, String, bool, usize, usize);

#[pymethods]
impl Checker {
    /// `types`: (name, taken, fields) in the table's order, each field (name, kind,
    /// required, min_length, max_length); then the table's constants, and the names
    /// of the record headers `check_record` makes (the id's, the clip id's).
    #[new]
    #[allow(clippy::too_many_arguments)]
    fn new(
        types: Vec<(String, bool, Vec<FieldRow>)>,
        methods: Vec<String>,
        method_needing_timestamp: String,
        key_field: String,
        clip_field: String,
        max_id: u64,
        earliest_us: i64,
        ahead_us: i64,
        record_headers: (Py<PyString>, Py<PyString>),
    ) -> PyResult<Self> {
        let mut table = Vec::with_capacity(types.len());
        for (name, taken, rows) in types {
            let mut fields = Vec::with_capacity(rows.len());
            for (field, kind, required, min_length, max_length) in rows {
                let kind = Kind::parse(&kind)?;
                fields.push(Field {
                    name: field,
                    kind,
                    required,
                    min_length,
                    max_length,
                });
            }
            if taken && !fields.iter().any(|f| f.name == key_field && f.required) {
                return Err(PyValueError::new_err(format!(
                    "{name}: no required {key_field}"
                )));
            }
            table.push(EventType {
                name,
                fields,
                taken,
            });
        }
        Ok(Checker {
            types: table,
            methods,
            method_needing_timestamp,
            key_field,
            clip_field,
            max_id,
            earliest_us,
            ahead_us,
            id_header: record_headers.0,
            clip_header: record_headers.1,
        })
    }

    /// The batch's items as (type indexes, keys, values, clip ids, stamped reasons,
    /// event ids), one entry each in the batch's order; None when the Python path must
    /// take it. `received_us`: the receive time in microseconds since the epoch, exactly
    /// the `datetime` the Python path compares with; `received_text`: it, formatted;
    /// `now_ms` and `seed`: the ids' milliseconds and the random bits' seed (a new one
    /// for every batch, from the caller's generator).
    #[allow(clippy::too_many_arguments)]
    fn check<'py>(
        &self,
        py: Python<'py>,
        body: &[u8],
        max_events: usize,
        received_us: i64,
        received_text: &str,
        now_ms: u64,
        seed: u64,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let checked = match self.batch(body, max_events, received_us, received_text) {
            Some(checked) => checked,
            None => return Ok(None),
        };
        let types = PyList::empty(py);
        let keys = PyList::empty(py);
        let values = PyList::empty(py);
        let clips = PyList::empty(py);
        let stamped = PyList::empty(py);
        let ids = PyList::empty(py);
        let mut random = SplitMix64(seed);
        for item in &checked {
            types.append(item.type_index)?;
            keys.append(PyBytes::new(py, &item.key))?;
            values.append(PyBytes::new(py, &item.value))?;
            clips.append(item.clip_id)?;
            stamped.append(item.stamped)?;
            ids.append(event_id(now_ms, &mut random))?;
        }
        Ok(Some(
            (types, keys, values, clips, stamped, ids)
                .into_pyobject(py)?
                .into_any(),
        ))
    }

    /// One event's body, as its type's own endpoint receives it (the type by its index
    /// in the table), made into its record: (key, value, headers, event id, clip id,
    /// stamped reason), or None when the Python path must take it. `now_ms` and `seed`:
    /// the id's milliseconds and the random bits' seed (a new one for every event);
    /// `shared`: the v2 headers the event shares with its tenant's events of the same
    /// receive time, as (for a timestamp kept, for a timestamp stamped). The record's
    /// headers are the id's, the shared ones, then the clip id's if it has one.
    #[allow(clippy::too_many_arguments)]
    fn check_record<'py>(
        &self,
        py: Python<'py>,
        type_index: usize,
        body: &[u8],
        received_us: i64,
        received_text: &str,
        now_ms: u64,
        seed: u64,
        shared: (Bound<'py, PyTuple>, Bound<'py, PyTuple>),
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        if !self.types.get(type_index).is_some_and(|t| t.taken) {
            return Ok(None);
        }
        let item = match serde_json::from_slice::<Object>(body)
            .ok()
            .and_then(|body| self.item(type_index, &body.0, received_us, received_text))
        {
            Some(item) => item,
            None => return Ok(None),
        };
        let id = event_id(now_ms, &mut SplitMix64(seed));
        let shared = if item.stamped == 0 {
            shared.0
        } else {
            shared.1
        };
        let mut headers = Vec::with_capacity(shared.len() + 2);
        headers.push(
            (self.id_header.bind(py), PyBytes::new(py, id.as_bytes()))
                .into_pyobject(py)?
                .into_any(),
        );
        headers.extend(shared.iter());
        if let Some(clip_id) = item.clip_id {
            let text = clip_id.to_string();
            headers.push(
                (self.clip_header.bind(py), PyBytes::new(py, text.as_bytes()))
                    .into_pyobject(py)?
                    .into_any(),
            );
        }
        Ok(Some(
            (
                PyBytes::new(py, &item.key),
                PyBytes::new(py, &item.value),
                PyTuple::new(py, headers)?,
                id,
                item.clip_id,
                item.stamped,
            )
                .into_pyobject(py)?
                .into_any(),
        ))
    }
}

impl Checker {
    fn batch(
        &self,
        body: &[u8],
        max_events: usize,
        received_us: i64,
        received_text: &str,
    ) -> Option<Vec<Checked>> {
        // Any other shape (another field beside "events", an item with an
        // idempotencyKey, a body that is not an object) fails to parse: declined.
        let events = serde_json::from_slice::<Batch>(body).ok()?.0;
        if events.is_empty() || events.len() > max_events {
            return None;
        }
        let mut checked = Vec::with_capacity(events.len());
        for event in &events {
            let name: &str = &event.name.0;
            let type_index = self.types.iter().position(|t| t.taken && t.name == name)?;
            checked.push(self.item(type_index, &event.body, received_us, received_text)?);
        }
        Some(checked)
    }

    fn item(
        &self,
        type_index: usize,
        body: &[(Text, Scalar)],
        received_us: i64,
        received_text: &str,
    ) -> Option<Checked> {
        let event_type = &self.types[type_index];
        let mut known = 0;
        let mut value = Vec::with_capacity(256);
        value.push(b'{');
        let mut stamped = 0;
        let mut key = Vec::new();
        let mut clip_id = None;
        let mut method_needs_timestamp = false;
        let mut timestamp_sent = false;
        for field in &event_type.fields {
            let sent = match body.iter().find(|(name, _)| name.0 == field.name) {
                Some((_, sent)) => {
                    known += 1;
                    sent
                }
                None => &Scalar::Null,
            };
            if sent.is_null() {
                if field.required {
                    return None;
                }
                if field.kind == Kind::Timestamp {
                    stamped = STAMPED_MISSING;
                }
                continue;
            }
            let start = value.len();
            if start > 1 {
                value.push(b',');
            }
            write_string(&mut value, &field.name);
            value.push(b':');
            match field.kind {
                Kind::ClientId | Kind::Text => {
                    let text = sent.as_str()?;
                    let length = text.len(); // bytes: characters, for printable ASCII
                    if !(field.min_length..=field.max_length).contains(&length)
                        || !text.bytes().all(|byte| (0x20..0x7f).contains(&byte))
                    {
                        return None;
                    }
                    write_string(&mut value, text);
                }
                Kind::Integer => {
                    let number = sent.as_u64()?; // a JSON integer: no fraction, no exponent
                    if !(1..=self.max_id).contains(&number) {
                        return None;
                    }
                    write_number(&mut value, number);
                }
                Kind::Boolean => {
                    let flag = sent.as_bool()?;
                    value.extend_from_slice(if flag { b"true" } else { b"false" });
                }
                Kind::Method => {
                    let method = sent.as_str()?;
                    if !self.methods.iter().any(|m| m == method) {
                        return None;
                    }
                    method_needs_timestamp = method == self.method_needing_timestamp;
                    write_string(&mut value, method);
                }
                Kind::Country => {
                    let code = sent.as_str()?;
                    if code.len() != 2 || !code.bytes().all(|byte| byte.is_ascii_alphabetic()) {
                        return None;
                    }
                    write_string(&mut value, &code.to_ascii_uppercase());
                }
                Kind::Timestamp => {
                    timestamp_sent = true;
                    let text = sent.as_str()?;
                    let moment = normal_utc_us(text)?;
                    if moment < self.earliest_us || moment > received_us + self.ahead_us {
                        // A wrong device clock: the receive time instead, at the end.
                        stamped = STAMPED_IMPLAUSIBLE;
                        value.truncate(start);
                        continue;
                    }
                    write_string(&mut value, text);
                }
            }
            if field.name == self.key_field {
                key = sent.as_str()?.as_bytes().to_vec();
            }
            if field.name == self.clip_field {
                clip_id = sent.as_u64();
            }
        }
        if known != body.len() || (method_needs_timestamp && !timestamp_sent) {
            // An unknown (or twice sent) field; an Offline play without its timestamp.
            return None;
        }
        if stamped != 0 {
            if value.len() > 1 {
                value.push(b',');
            }
            write_string(&mut value, "timestamp");
            value.push(b':');
            write_string(&mut value, received_text);
        }
        value.push(b'}');
        Some(Checked {
            type_index,
            key,
            value,
            clip_id,
            stamped,
        })
    }
}

/// Sebastiano Vigna's SplitMix64: 64 random bits per step from a 64-bit seed. The ids
/// must be unique, not unguessable (as `relay.envelope.new_event_id`'s).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// A UUIDv7 (RFC 9562) as `relay.envelope.new_event_id` makes one: 48 bits of Unix
/// milliseconds, the version, 12 random bits, the variant, 62 random bits.
fn event_id(now_ms: u64, random: &mut SplitMix64) -> String {
    let (high, low) = (random.next(), random.next());
    let value = (u128::from(now_ms & 0xFFFF_FFFF_FFFF) << 80)
        | (0x7u128 << 76)
        | (u128::from(high & 0xFFF) << 64)
        | (0b10u128 << 62)
        | u128::from(low & 0x3FFF_FFFF_FFFF_FFFF);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(36);
    for nibble in 0..32 {
        if matches!(nibble, 8 | 12 | 16 | 20) {
            text.push('-');
        }
        let digit = (value >> (124 - 4 * nibble)) & 0xF;
        text.push(char::from(HEX[digit as usize]));
    }
    text
}

/// A JSON integer as orjson writes it (digits only: `number` is not negative).
fn write_number(out: &mut Vec<u8>, number: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = number;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// A JSON string of printable ASCII (all this module writes), as orjson writes it.
fn write_string(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    for &byte in text.as_bytes() {
        if byte == b'"' || byte == b'\\' {
            out.push(b'\\');
        }
        out.push(byte);
    }
    out.push(b'"');
}

/// Microseconds since the epoch of a timestamp that `format_timestamp` would give back
/// unchanged (`YYYY-MM-DDTHH:MM:SSZ`, or with `.mmm` not `.000`) and that is on the
/// calendar; None for any other text.
fn normal_utc_us(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let millis = match b.len() {
        20 => 0,
        24 if b[19] == b'.' && &b[20..23] != b"000" => number(&b[20..23])?,
        _ => return None,
    };
    if b[b.len() - 1] != b'Z'
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (number(&b[0..4])?, number(&b[5..7])?, number(&b[8..10])?);
    let (hour, minute, second) = (
        number(&b[11..13])?,
        number(&b[14..16])?,
        number(&b[17..19])?,
    );
    if year == 0 || !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second;
    Some(seconds * US_PER_S + millis * 1_000)
}

fn number(digits: &[u8]) -> Option<i64> {
    digits.iter().try_fold(0i64, |total, &digit| {
        digit
            .is_ascii_digit()
            .then(|| total * 10 + i64::from(digit - b'0'))
    })
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (Howard
/// Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[pymodule]
fn relay_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Checker>()?;
    Ok(())
}

// The JSON the checker reads, parsed only as far as the strict form needs and borrowed
// from the body where a string has no escapes: serde_json's `Value` built a tree of
// owned maps and strings for every body, and its allocations were about a third of the
// check's time. A shape the strict form never has fails to parse, and is declined.

/// A JSON string, borrowed from the body unless it had escapes.
struct Text<'a>(Cow<'a, str>);

/// A value as the strict form reads one: anything it never takes is `Other`.
enum Scalar<'a> {
    Null,
    Bool(bool),
    Unsigned(u64),
    Str(Text<'a>),
    Other, // a negative or fractional number, an array, an object
}

impl Scalar<'_> {
    fn is_null(&self) -> bool {
        matches!(self, Scalar::Null)
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Scalar::Str(text) => Some(&text.0),
            _ => None,
        }
    }

    fn as_u64(&self) -> Option<u64> {
        match self {
            Scalar::Unsigned(number) => Some(*number),
            _ => None,
        }
    }

    fn as_bool(&self) -> Option<bool> {
        match self {
            Scalar::Bool(flag) => Some(*flag),
            _ => None,
        }
    }
}

/// A JSON object's members in the order sent, a name sent twice kept twice (the
/// checker then declines it, as it declines any field it does not know).
struct Object<'a>(Vec<(Text<'a>, Scalar<'a>)>);

/// A batch item: exactly "type" (a string) and "body" (an object).
struct Event<'a> {
    name: Text<'a>,
    body: Vec<(Text<'a>, Scalar<'a>)>,
}

/// A batch: exactly "events" (an array of items).
struct Batch<'a>(Vec<Event<'a>>);

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text<'de>;

    fn expecting(&self, out: &mut fmt::Formatter) -> fmt::Result {
        out.write_str("a string")
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, text: &'de str) -> Result<Text<'de>, E> {
        Ok(Text(Cow::Borrowed(text)))
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Text<'de>, E> {
        Ok(Text(Cow::Owned(text.to_owned())))
    }
}

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(input: D) -> Result<Self, D::Error> {
        input.deserialize_str(TextVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, out: &mut fmt::Formatter) -> fmt::Result {
        out.write_str("a JSON value")
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Null)
    }

    fn visit_bool<E: serde::de::Error>(self, flag: bool) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Bool(flag))
    }

    fn visit_u64<E: serde::de::Error>(self, number: u64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Unsigned(number))
    }

    fn visit_i64<E: serde::de::Error>(self, _number: i64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Other)
    }

    fn visit_f64<E: serde::de::Error>(self, _number: f64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Other)
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, text: &'de str) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Str(Text(Cow::Borrowed(text))))
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Str(Text(Cow::Owned(text.to_owned()))))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Scalar<'de>, A::Error> {
        while items.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut members: A) -> Result<Scalar<'de>, A::Error> {
        while members.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other)
    }
}

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(input: D) -> Result<Self, D::Error> {
        input.deserialize_any(ScalarVisitor)
    }
}

struct ObjectVisitor;

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = Object<'de>;

    fn expecting(&self, out: &mut fmt::Formatter) -> fmt::Result {
        out.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut members: A) -> Result<Object<'de>, A::Error> {
        let mut fields = Vec::with_capacity(8);
        while let Some(member) = members.next_entry::<Text, Scalar>()? {
            fields.push(member);
        }
        Ok(Object(fields))
    }
}

impl<'de> Deserialize<'de> for Object<'de> {
    fn deserialize<D: Deserializer<'de>>(input: D) -> Result<Self, D::Error> {
        input.deserialize_map(ObjectVisitor)
    }
}

struct EventVisitor;

impl<'de> Visitor<'de> for EventVisitor {
    type Value = Event<'de>;

    fn expecting(&self, out: &mut fmt::Formatter) -> fmt::Result {
        out.write_str("an event of the strict form")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut members: A) -> Result<Event<'de>, A::Error> {
        let (mut name, mut body) = (None, None);
        while let Some(member) = members.next_key::<Text>()? {
            match member.0.as_ref() {
                "type" if name.is_none() => name = Some(members.next_value::<Text>()?),
                "body" if body.is_none() => body = Some(members.next_value::<Object>()?.0),
                _ => return Err(A::Error::custom("not of the strict form")),
            }
        }
        match (name, body) {
            (Some(name), Some(body)) => Ok(Event { name, body }),
            _ => Err(A::Error::custom("not of the strict form")),
        }
    }
}

impl<'de> Deserialize<'de> for Event<'de> {
    fn deserialize<D: Deserializer<'de>>(input: D) -> Result<Self, D::Error> {
        input.deserialize_map(EventVisitor)
    }
}

struct BatchVisitor;

impl<'de> Visitor<'de> for BatchVisitor {
    type Value = Batch<'de>;

    fn expecting(&self, out: &mut fmt::Formatter) -> fmt::Result {
        out.write_str("a batch of the strict form")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut members: A) -> Result<Batch<'de>, A::Error> {
        let mut events = None;
        while let Some(member) = members.next_key::<Text>()? {
            match member.0.as_ref() {
                "events" if events.is_none() => events = Some(members.next_value()?),
                _ => return Err(A::Error::custom("not of the strict form")),
            }
        }
        events
            .map(Batch)
            .ok_or_else(|| A::Error::custom("not of the strict form"))
    }
}

impl<'de> Deserialize<'de> for Batch<'de> {
    fn deserialize<D: Deserializer<'de>>(input: D) -> Result<Self, D::Error> {
        input.deserialize_map(BatchVisitor)
    }
}
