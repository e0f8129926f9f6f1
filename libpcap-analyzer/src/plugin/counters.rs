//! Named counters a plugin reports for the run summary
//! ([`Plugin::counters`](super::Plugin::counters)).

use std::borrow::Cow;

/// One named counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counter {
    /// Its name, stable (scripts read it): snake_case, unique in the plugin.
    pub name: Cow<'static, str>,
    /// Its value for the run so far.
    pub value: u64,
    /// `true` for what the plugin could not analyse (malformed data, data
    /// over a cap): the tools list these apart, and a non-zero one is
    /// logged as a warning.
    pub loss: bool,
}

/// The named counters of a plugin: what it counted and, marked as losses,
/// what it saw but could not analyse.
///
/// Counters are sums: the value of a run with several workers is the sum of
/// the workers' values (so that figures can be shown while the run goes
/// on); [`Plugin::merge`](super::Plugin::merge) should add them likewise.
///
/// ```
/// use libpcap_analyzer::plugin::Counters;
///
/// let c = Counters::new().count("messages", 10).loss("malformed", 3);
/// assert_eq!(c.get("malformed"), Some(3));
/// assert_eq!(c.losses().map(|l| l.name.as_ref()).collect::<Vec<_>>(), ["malformed"]);
/// assert_eq!(c.to_json(), serde_json::json!({"messages": 10, "malformed": 3}));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    list: Vec<Counter>,
}

impl Counters {
    /// No counter.
    pub fn new() -> Counters {
        Counters::default()
    }

    /// Adds a counter of what was seen or done (a name given twice adds up).
    pub fn count(self, name: impl Into<Cow<'static, str>>, value: u64) -> Counters {
        self.with(name.into(), value, false)
    }

    /// Adds a counter of what could not be analysed (a name given twice
    /// adds up).
    pub fn loss(self, name: impl Into<Cow<'static, str>>, value: u64) -> Counters {
        self.with(name.into(), value, true)
    }

    fn with(mut self, name: Cow<'static, str>, value: u64, loss: bool) -> Counters {
        self.add_one(name, value, loss);
        self
    }

    fn add_one(&mut self, name: Cow<'static, str>, value: u64, loss: bool) {
        match self.list.iter_mut().find(|c| c.name == name) {
            Some(c) => {
                c.value = c.value.saturating_add(value);
                c.loss |= loss;
            }
            None => self.list.push(Counter { name, value, loss }),
        }
    }

    /// Adds the counters of `other` (another worker's) to these, by name.
    pub fn add(&mut self, other: &Counters) {
        for c in &other.list {
            self.add_one(c.name.clone(), c.value, c.loss);
        }
    }

    /// The value of the counter `name`.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.list.iter().find(|c| c.name == name).map(|c| c.value)
    }

    /// Every counter, in the order the plugin gave them.
    pub fn iter(&self) -> std::slice::Iter<'_, Counter> {
        self.list.iter()
    }

    /// The losses that are not zero.
    pub fn losses(&self) -> impl Iterator<Item = &Counter> {
        self.list.iter().filter(|c| c.loss && c.value > 0)
    }

    /// `true` without any counter.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// `true` when every counter is zero.
    pub fn all_zero(&self) -> bool {
        self.list.iter().all(|c| c.value == 0)
    }

    /// The counters as a JSON object, name to value, in order.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Object(
            self.list
                .iter()
                .map(|c| (c.name.to_string(), c.value.into()))
                .collect(),
        )
    }
}

impl serde::Serialize for Counters {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.list.len()))?;
        for c in &self.list {
            m.serialize_entry(c.name.as_ref(), &c.value)?;
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_sums_by_name_and_keeps_new_names() {
        let mut a = Counters::new().count("x", 1).loss("y", 2);
        a.add(&Counters::new().loss("y", 5).count("z", u64::MAX));
        a.add(&Counters::new().count("z", 1));
        assert_eq!(a.get("x"), Some(1));
        assert_eq!(a.get("y"), Some(7));
        assert_eq!(a.get("z"), Some(u64::MAX), "saturates");
        assert_eq!(a.get("w"), None);
        let names: Vec<_> = a.iter().map(|c| c.name.as_ref()).collect();
        assert_eq!(names, ["x", "y", "z"]);
        assert_eq!(a.losses().count(), 1);
        assert!(!a.all_zero());
        assert!(Counters::new().count("a", 0).loss("b", 0).all_zero());
        assert_eq!(Counters::new().loss("b", 0).losses().count(), 0);
    }

    #[test]
    fn serialises_as_an_object_in_order() {
        let c = Counters::new().count("b", 1).loss(String::from("a"), 2);
        assert_eq!(serde_json::to_string(&c).unwrap(), r#"{"b":1,"a":2}"#);
    }
}
