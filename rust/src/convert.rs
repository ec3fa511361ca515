//! Python objects <-> regorus values, with `json.dumps` / `json.loads` semantics.
//!
//! Input accepts exactly what `json.dumps(obj, allow_nan=False)` accepts (dict, list, tuple, str,
//! int, float, bool, None and their subclasses; dict keys str, int, float, bool or None), and
//! raises TypeError or ValueError where it would. Output is what `json.loads` makes of the
//! result's JSON: sets become lists, non-string object keys their JSON text.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use std::collections::BTreeMap;

use regorus::Value;

/// Deepest nesting accepted in an input, as regorus' own JSON parser accepts (serde_json's limit).
pub const MAX_DEPTH: usize = 128;

pub fn to_value(object: &Bound<'_, PyAny>) -> PyResult<Value> {
    value(object, 0)
}

fn too_deep() -> PyErr {
    PyValueError::new_err(format!("the input nests deeper than {MAX_DEPTH} levels"))
}

fn value(object: &Bound<'_, PyAny>, depth: usize) -> PyResult<Value> {
    if let Ok(text) = object.cast::<PyString>() {
        return Ok(Value::from(text.to_str()?));
    }
    if object.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(flag) = object.cast::<PyBool>() {
        return Ok(Value::from(flag.is_true()));
    }
    if let Ok(number) = object.cast::<PyInt>() {
        return int(number);
    }
    if let Ok(number) = object.cast::<PyFloat>() {
        return float(number);
    }
    if depth >= MAX_DEPTH {
        if object.is_instance_of::<PyDict>() || object.is_instance_of::<PyList>() || object.is_instance_of::<PyTuple>() {
            return Err(too_deep());
        }
    }
    if let Ok(dict) = object.cast::<PyDict>() {
        let mut map = BTreeMap::new();
        for (key, item) in dict.iter() {
            map.insert(Value::from(key_text(&key)?), value(&item, depth + 1)?);
        }
        return Ok(Value::from(map));
    }
    if let Ok(list) = object.cast::<PyList>() {
        let mut items = Vec::with_capacity(list.len());
        for item in list.iter() {
            items.push(value(&item, depth + 1)?);
        }
        return Ok(Value::from(items));
    }
    if let Ok(tuple) = object.cast::<PyTuple>() {
        let mut items = Vec::with_capacity(tuple.len());
        for item in tuple.iter() {
            items.push(value(&item, depth + 1)?);
        }
        return Ok(Value::from(items));
    }
    Err(PyTypeError::new_err(format!(
        "Object of type {} is not JSON serializable",
        object.get_type().name()?
    )))
}

fn int(number: &Bound<'_, PyInt>) -> PyResult<Value> {
    if let Ok(small) = number.extract::<i64>() {
        return Ok(Value::from(small));
    }
    if let Ok(large) = number.extract::<u64>() {
        return Ok(Value::from(large));
    }
    // Beyond 64 bits: regorus numbers are arbitrary-precision, parsed from the decimal digits as JSON would be.
    let digits = int_repr(number)?;
    Value::from_json_str(&digits).map_err(|error| PyValueError::new_err(format!("{error:#}")))
}

/// `int.__repr__(n)`: the digits, also for int subclasses (IntEnum) whose own repr is not a number, like json.
fn int_repr(number: &Bound<'_, PyAny>) -> PyResult<String> {
    let py = number.py();
    py.get_type::<PyInt>().call_method1("__repr__", (number,))?.extract()
}

fn float(number: &Bound<'_, PyFloat>) -> PyResult<Value> {
    let real = number.value();
    if !real.is_finite() {
        return Err(PyValueError::new_err(format!("Out of range float values are not JSON compliant: {real}")));
    }
    if real.abs() <= F64_EXACT {
        return Ok(Value::from(real));
    }
    // Large floats: regorus reads json.dumps' text of them in its own way; read exactly that text.
    let text: String = number.py().get_type::<PyFloat>().call_method1("__repr__", (number,))?.extract()?;
    Value::from_json_str(&text).map_err(|error| PyValueError::new_err(format!("{error:#}")))
}

/// A dict key as json.dumps writes it.
fn key_text(key: &Bound<'_, PyAny>) -> PyResult<String> {
    if let Ok(text) = key.cast::<PyString>() {
        return Ok(text.to_str()?.to_owned());
    }
    if key.is_none() {
        return Ok("null".to_owned());
    }
    if let Ok(flag) = key.cast::<PyBool>() {
        return Ok(if flag.is_true() { "true" } else { "false" }.to_owned());
    }
    if key.is_instance_of::<PyInt>() {
        return int_repr(key);
    }
    if let Ok(number) = key.cast::<PyFloat>() {
        let value = number.value();
        if !value.is_finite() {
            return Err(PyValueError::new_err(format!("Out of range float values are not JSON compliant: {value}")));
        }
        let py = key.py();
        return py.get_type::<PyFloat>().call_method1("__repr__", (key,))?.extract();
    }
    Err(PyTypeError::new_err(format!(
        "keys must be str, int, float, bool or None, not {}",
        key.get_type().name()?
    )))
}

/// Largest integer every f64 holds exactly (2^53).
const F64_EXACT: f64 = 9_007_199_254_740_992.0;

pub fn to_python<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Null | Value::Undefined => py.None().into_bound(py),
        Value::Bool(flag) => PyBool::new(py, *flag).to_owned().into_any(),
        Value::String(text) => PyString::new(py, text).into_any(),
        // As json.loads reads regorus' JSON of it: regorus writes integral values (floats too) as digits
        // (beyond 2^53 a float's shortest decimal, zero-padded), which serde_json keeps as an integer
        // if it fits 64 bits and turns into a float otherwise; other values are floats.
        Value::Number(number) => {
            let exact = number.as_f64().filter(|real| real.abs() <= F64_EXACT);
            match (number.is_integer(), exact) {
                (true, Some(real)) => (real as i64).into_pyobject(py)?.into_any(),
                // Read by serde_json, as regorus' own JSON writer does.
                (true, None) => {
                    let parsed = number.format_decimal().parse::<serde_json::Number>().ok();
                    if let Some(small) = parsed.as_ref().and_then(serde_json::Number::as_i64) {
                        small.into_pyobject(py)?.into_any()
                    } else if let Some(large) = parsed.as_ref().and_then(serde_json::Number::as_u64) {
                        large.into_pyobject(py)?.into_any()
                    } else if let Some(real) = parsed.as_ref().and_then(serde_json::Number::as_f64) {
                        PyFloat::new(py, real).into_any()
                    } else {
                        return Err(PyValueError::new_err("cannot encode the result: a number is out of range"));
                    }
                }
                (false, Some(real)) => PyFloat::new(py, real).into_any(),
                (false, None) => match number.as_f64() {
                    Some(real) => PyFloat::new(py, real).into_any(),
                    None => return Err(PyValueError::new_err("cannot encode the result: a number is not finite")),
                },
            }
        }
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items.iter() {
                list.append(to_python(py, item)?)?;
            }
            list.into_any()
        }
        Value::Set(items) => {
            let list = PyList::empty(py);
            for item in items.iter() {
                list.append(to_python(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(fields) => {
            let dict = PyDict::new(py);
            for (key, item) in fields.iter_sorted() {
                match key {
                    Value::String(text) => dict.set_item(PyString::new(py, text), to_python(py, item)?)?,
                    other => {
                        let text = serde_json::to_string(other)
                            .map_err(|error| PyValueError::new_err(format!("cannot encode a key: {error}")))?;
                        dict.set_item(text, to_python(py, item)?)?
                    }
                }
            }
            dict.into_any()
        }
    })
}
