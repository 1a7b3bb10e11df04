//! A small printf for the `format` option of DDL aggregates.
//!
//! DDLs written for MCollective and Choria carry C-style formats such as
//! `%.2f` or `%d MB`. One conversion is applied to one value, with text around
//! it kept and `%%` printing a percent sign. Anything this does not understand
//! — no conversion, two of them, an unknown letter, a value that does not fit
//! the conversion — prints the value plainly instead of failing, because a
//! summary with default formatting beats no summary.

use serde_json::Value;

use super::plain;

/// One parsed conversion: `%[flags][width][.precision]conv`.
#[derive(Debug, Default)]
struct Spec {
    left: bool,
    zero: bool,
    plus: bool,
    space: bool,
    alt: bool,
    width: usize,
    precision: Option<usize>,
    conv: char,
}

/// Formats `v` with a printf-like `fmt` holding one conversion among `%s`,
/// `%d`/`%i`/`%u`, `%f`/`%F` and `%x`/`%X`, with flags `-+ 0#`, a width and a
/// precision. Falls back to the plain value when `fmt` or `v` do not fit.
pub fn format_printf(fmt: &str, v: &Value) -> String {
    let Some((prefix, spec, suffix)) = parse(fmt) else {
        return plain(v);
    };
    match convert(&spec, v) {
        Some(body) => format!("{prefix}{body}{suffix}"),
        None => plain(v),
    }
}

/// Splits `fmt` into the text before the conversion, the conversion and the
/// text after it (with `%%` already unescaped); `None` unless there is exactly
/// one well-formed conversion.
fn parse(fmt: &str) -> Option<(String, Spec, String)> {
    let mut prefix = String::new();
    let mut suffix = String::new();
    let mut spec: Option<Spec> = None;
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        let out = if spec.is_some() {
            &mut suffix
        } else {
            &mut prefix
        };
        if c != '%' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'%') {
            chars.next();
            out.push('%');
            continue;
        }
        if spec.is_some() {
            return None;
        }
        let mut s = Spec::default();
        while let Some(&f) = chars.peek() {
            match f {
                '-' => s.left = true,
                '0' => s.zero = true,
                '+' => s.plus = true,
                ' ' => s.space = true,
                '#' => s.alt = true,
                _ => break,
            }
            chars.next();
        }
        s.width = digits(&mut chars).unwrap_or(0);
        if chars.peek() == Some(&'.') {
            chars.next();
            s.precision = Some(digits(&mut chars).unwrap_or(0));
        }
        s.conv = chars.next()?;
        if !matches!(s.conv, 's' | 'd' | 'i' | 'u' | 'f' | 'F' | 'x' | 'X') {
            return None;
        }
        spec = Some(s);
    }
    spec.map(|s| (prefix, s, suffix))
}

fn digits(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<usize> {
    let mut n: Option<usize> = None;
    while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
        chars.next();
        n = Some(n.unwrap_or(0).saturating_mul(10).saturating_add(d as usize));
    }
    n
}

/// The converted value, padded to the spec's width; `None` when `v` does not fit.
fn convert(spec: &Spec, v: &Value) -> Option<String> {
    match spec.conv {
        's' => {
            let text = plain(v);
            let text = match spec.precision {
                Some(p) => text.chars().take(p).collect(),
                None => text,
            };
            Some(pad_to(spec, String::new(), text, false))
        }
        'd' | 'i' | 'u' => {
            let n = integer(v)?;
            let mut digits = n.unsigned_abs().to_string();
            if let Some(p) = spec.precision {
                digits = format!("{digits:0>p$}");
            }
            let sign = sign(spec, n < 0);
            Some(pad_to(spec, sign, digits, spec.precision.is_none()))
        }
        'f' | 'F' => {
            let x = float(v)?;
            if !x.is_finite() {
                return None;
            }
            let p = spec.precision.unwrap_or(6);
            let digits = format!("{:.p$}", x.abs());
            let negative =
                x.is_sign_negative() && digits.bytes().any(|b| b.is_ascii_digit() && b != b'0');
            Some(pad_to(spec, sign(spec, negative), digits, true))
        }
        'x' | 'X' => {
            let n = u64::try_from(integer(v)?).ok()?;
            let mut digits = if spec.conv == 'x' {
                format!("{n:x}")
            } else {
                format!("{n:X}")
            };
            if let Some(p) = spec.precision {
                digits = format!("{digits:0>p$}");
            }
            let prefix = match (spec.alt && n != 0, spec.conv) {
                (true, 'x') => "0x",
                (true, _) => "0X",
                (false, _) => "",
            };
            Some(pad_to(
                spec,
                prefix.to_string(),
                digits,
                spec.precision.is_none(),
            ))
        }
        _ => None,
    }
}

fn sign(spec: &Spec, negative: bool) -> String {
    match (negative, spec.plus, spec.space) {
        (true, _, _) => "-",
        (false, true, _) => "+",
        (false, false, true) => " ",
        (false, false, false) => "",
    }
    .to_string()
}

/// Joins sign and digits and pads to the width: on the right with `-`, with
/// zeros between sign and digits for `0` on numbers, else on the left.
fn pad_to(spec: &Spec, sign: String, body: String, zero_ok: bool) -> String {
    let len = sign.chars().count() + body.chars().count();
    let fill = spec.width.saturating_sub(len);
    if spec.left {
        format!("{sign}{body}{}", " ".repeat(fill))
    } else if spec.zero && zero_ok {
        format!("{sign}{}{body}", "0".repeat(fill))
    } else {
        format!("{}{sign}{body}", " ".repeat(fill))
    }
}

/// An integer from a number (floats truncated toward zero) or a numeric string.
fn integer(v: &Value) -> Option<i128> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
            .or_else(|| n.as_f64().and_then(truncate)),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<i128>()
                .ok()
                .or_else(|| s.parse::<f64>().ok().and_then(truncate))
        }
        _ => None,
    }
}

fn truncate(x: f64) -> Option<i128> {
    (x.is_finite() && x.abs() < 1e30).then(|| x.trunc() as i128)
}

/// A float from a number or a numeric string.
fn float(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(fmt: &str, v: Value) -> String {
        format_printf(fmt, &v)
    }

    #[test]
    fn strings() {
        assert_eq!(f("%s", json!("abc")), "abc");
        assert_eq!(f("[%5s]", json!("ab")), "[   ab]");
        assert_eq!(f("[%-5s]", json!("ab")), "[ab   ]");
        assert_eq!(f("%.2s", json!("abcdef")), "ab");
        assert_eq!(f("%s MB", json!(12)), "12 MB");
        assert_eq!(f("%s", json!(true)), "true");
    }

    #[test]
    fn integers() {
        assert_eq!(f("%d", json!(42)), "42");
        assert_eq!(f("%d", json!(2.9)), "2");
        assert_eq!(f("%d", json!(-2.9)), "-2");
        assert_eq!(f("%i", json!("17")), "17");
        assert_eq!(f("%05d", json!(-42)), "-0042");
        assert_eq!(f("%+d", json!(42)), "+42");
        assert_eq!(f("%-4d|", json!(7)), "7   |");
        assert_eq!(f("%.3d", json!(7)), "007");
        assert_eq!(f("%d", json!(u64::MAX)), u64::MAX.to_string());
        assert_eq!(f("%#x", json!(255)), "0xff");
        assert_eq!(f("%X", json!(255)), "FF");
    }

    #[test]
    fn floats() {
        assert_eq!(f("%.2f", json!(12.3456)), "12.35");
        assert_eq!(f("%f", json!(1.5)), "1.500000");
        assert_eq!(f("%.1f", json!(3)), "3.0");
        assert_eq!(f("%08.2f", json!(-1.5)), "-0001.50");
        assert_eq!(f("%.1f", json!(-0.01)), "0.0");
        assert_eq!(f("load %.2f%%", json!("0.5")), "load 0.50%");
    }

    #[test]
    fn falls_back_to_plain() {
        assert_eq!(f("no conversion", json!(1.5)), "1.5");
        assert_eq!(f("%d and %d", json!(1)), "1");
        assert_eq!(f("%q", json!(1)), "1");
        assert_eq!(f("%e", json!(1)), "1");
        assert_eq!(f("%", json!("x")), "x");
        assert_eq!(f("%d", json!("abc")), "abc");
        assert_eq!(f("%.2f", json!([1, 2])), "[1,2]");
        assert_eq!(f("%x", json!(-1)), "-1");
    }
}
