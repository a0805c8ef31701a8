//! OpenWhisk packages: named groups of actions with parameters of their own, and package bindings.
//!
//! A package's actions are the functions named `pkg/action` (stored as `functions/pkg+action.json`, see
//! `store.rs`); the package record itself is `packages/NAME.json`, written atomically through the
//! [`Store`] like functions, and loaded when the host starts. Records follow OpenWhisk's `WhiskPackage`:
//! `namespace`, `name`, `version` (`0.0.1`, bumped on every update unless given), `publish`, `binding`
//! (`{}` for a package), `parameters`, `annotations` (a binding also carries the `binding` annotation
//! the controller sets) and `updated`.
//!
//! Rules as in OpenWhisk's controller (`Packages.scala`, `Actions.scala`):
//! - `PUT` on an existing package without `overwrite=true` is 409 `resource already exists`; an update
//!   replaces what the body gives and keeps the rest; a package cannot become a binding (409).
//! - A binding (`binding: {namespace, name}`, `_` for this namespace) must name an existing package
//!   that is not itself a binding (400 `Binding references a package that does not exist.` /
//!   `Cannot bind to another package binding.`).
//! - Deleting a package that still has actions is 409 `Package not empty (contains N entities). Set
//!   force param or delete package contents.`; `force=true` deletes its actions first; a binding can
//!   always be deleted.
//! - `pkg/action` in a missing package is 404; creating, updating or deleting an action through a
//!   binding is 400 `Operation not permitted on package binding.`; getting or invoking one resolves the
//!   binding to the bound package's action.
//! - Parameters merge from the bound package, under the binding's, under the action's, under the
//!   invocation's (each later one wins); see [`Host::resolve_action`].
//!
//! Lock order: the package map is taken before the host's state lock, never under it.

use crate::error::HostError;
use crate::host::Host;
use crate::model::{FunctionInfo, KeyValue};
use crate::store::{valid_name, Store};
use crate::util::now_ms;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

/// The directory of package records under the state directory.
const DIR: &str = "packages";

/// OpenWhisk's message for writes to actions through a binding.
pub const NOT_ALLOWED_ON_BINDING: &str = "Operation not permitted on package binding.";
/// OpenWhisk's message for a binding to a missing package.
pub const BINDING_DOES_NOT_EXIST: &str = "Binding references a package that does not exist.";
/// OpenWhisk's message for a binding to a binding.
pub const BINDING_TO_BINDING: &str = "Cannot bind to another package binding.";
/// OpenWhisk's message for a `PUT` without `overwrite` on an existing entity.
pub const ENTITY_EXISTS: &str = "resource already exists";

/// The package a binding refers to.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Binding {
    pub namespace: String,
    pub name: String,
}

/// `None` is written as `{}` (OpenWhisk's record of a package that is not a binding).
fn write_binding<S: Serializer>(b: &Option<Binding>, s: S) -> Result<S::Ok, S::Error> {
    match b {
        Some(b) => b.serialize(s),
        None => Map::new().serialize(s),
    }
}

/// `{}`, `null` and an absent field are no binding.
fn read_binding<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Binding>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) if m.is_empty() => Ok(None),
        Some(v) => {
            let mut m = match v {
                Value::Object(m) => m,
                _ => return Err(serde::de::Error::custom("binding must be an object")),
            };
            m.entry("namespace").or_insert_with(|| json!("_"));
            serde_json::from_value(Value::Object(m)).map(Some).map_err(serde::de::Error::custom)
        }
    }
}

/// A stored package (OpenWhisk's package record).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PackageInfo {
    pub namespace: String,
    pub name: String,
    pub version: String,
    pub publish: bool,
    #[serde(default, serialize_with = "write_binding", deserialize_with = "read_binding")]
    pub binding: Option<Binding>,
    pub parameters: Vec<KeyValue>,
    pub annotations: Vec<KeyValue>,
    /// Last create/update, ms since the epoch.
    pub updated: u64,
}

/// The body of a package create/update (OpenWhisk's `WhiskPackagePut`): every field optional.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct PackagePut {
    #[serde(default, deserialize_with = "read_binding")]
    pub binding: Option<Binding>,
    #[serde(default)]
    pub parameters: Option<Vec<KeyValue>>,
    #[serde(default)]
    pub annotations: Option<Vec<KeyValue>>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub publish: Option<bool>,
}

/// One action in a package's `GET` answer (OpenWhisk's `actions` entries).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PackageAction {
    pub name: String,
    pub version: String,
    pub annotations: Vec<KeyValue>,
}

/// A package's `GET` answer: its record (a binding's parameters merged over the bound package's) and
/// the actions it offers (a binding: the bound package's).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PackageView {
    #[serde(flatten)]
    pub info: PackageInfo,
    pub actions: Vec<PackageAction>,
    pub feeds: Vec<Value>,
}

/// An action name resolved through its package: the function that runs and the parameters its
/// package contributes (already merged binding over bound package).
#[derive(Clone, Debug, PartialEq)]
pub struct Resolved {
    /// The host's function key: `name` or `pkg/name` with `pkg` a real package, never a binding.
    pub function: String,
    pub package_parameters: Vec<KeyValue>,
}

/// The namespace's packages by name.
pub(crate) type Packages = BTreeMap<String, PackageInfo>;

/// The packages of the namespace, loaded from and written through the store.
pub(crate) struct PackageStore {
    map: Mutex<Packages>,
}

impl PackageStore {
    /// Loads every stored package (temporary and unreadable files are skipped).
    pub fn open(store: &Store) -> std::io::Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        let dir = store.root().join(DIR);
        std::fs::create_dir_all(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        let mut map = BTreeMap::new();
        for e in std::fs::read_dir(&dir)?.flatten() {
            let file = e.file_name().to_string_lossy().into_owned();
            let Some(name) = file.strip_suffix(".json").filter(|n| valid_name(n)) else {
                continue;
            };
            if let Some(p) = store.load_json::<PackageInfo>(&format!("{DIR}/{file}")) {
                if p.name == name {
                    map.insert(p.name.clone(), p);
                }
            }
        }
        Ok(Self { map: Mutex::new(map) })
    }

    pub fn lock(&self) -> MutexGuard<'_, Packages> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `lower` with `upper` merged over it, key by key (OpenWhisk's `inherit`: `upper` wins).
pub fn merge(lower: &[KeyValue], upper: &[KeyValue]) -> Vec<KeyValue> {
    let mut out = lower.to_vec();
    for p in upper {
        match out.iter_mut().find(|o| o.key == p.key) {
            Some(o) => o.value = p.value.clone(),
            None => out.push(p.clone()),
        }
    }
    out
}

/// `params` as a JSON object (later keys win).
pub fn to_map(params: &[KeyValue]) -> Map<String, Value> {
    params.iter().map(|p| (p.key.clone(), p.value.clone())).collect()
}

/// The package part of `pkg/action`, if any.
pub fn package_of(name: &str) -> Option<(&str, &str)> {
    name.split_once('/')
}

/// Resolves `name` (`action` or `pkg/action`) against `map`: see [`Resolved`].
pub(crate) fn resolve(map: &Packages, name: &str) -> Result<Resolved, HostError> {
    let Some((pkg, action)) = package_of(name) else {
        return Ok(Resolved { function: name.to_string(), package_parameters: vec![] });
    };
    let missing = || HostError::NotFound(format!("package '{pkg}'"));
    let p = map.get(pkg).ok_or_else(missing)?;
    Ok(match &p.binding {
        None => Resolved { function: name.to_string(), package_parameters: p.parameters.clone() },
        Some(b) => {
            let bound = map.get(&b.name).ok_or_else(missing)?;
            Resolved {
                function: format!("{}/{action}", bound.name),
                package_parameters: merge(&bound.parameters, &p.parameters),
            }
        }
    })
}

/// The OpenWhisk view of action record `f`: an action `pkg/name` has namespace `NS/pkg` and name `name`.
pub fn action_view(f: &FunctionInfo) -> Value {
    let mut v = serde_json::to_value(f).unwrap_or_default();
    if let Some((pkg, action)) = package_of(&f.name) {
        v["namespace"] = json!(format!("{}/{pkg}", f.namespace));
        v["name"] = json!(action);
    }
    v
}

impl Host {
    fn packages(&self) -> MutexGuard<'_, Packages> {
        self.inner.packages.lock()
    }

    /// The number of actions of package `pkg` (under the state lock).
    fn actions_in(&self, pkg: &str) -> usize {
        let prefix = format!("{pkg}/");
        self.inner.lock().functions.keys().filter(|k| k.starts_with(&prefix)).count()
    }

    /// Creates package `name` from `put` or, with `overwrite`, updates it (what `put` gives replaces
    /// the stored value, the version is bumped unless given).
    pub async fn put_package(&self, name: &str, put: PackagePut, overwrite: bool) -> Result<PackageInfo, HostError> {
        if !valid_name(name) {
            return Err(HostError::InvalidArgs(format!("invalid package name '{name}'")));
        }
        let ns = self.inner.cfg.namespace.clone();
        let mut map = self.packages();
        let old = map.get(name);
        if old.is_some() && !overwrite {
            return Err(HostError::Conflict(ENTITY_EXISTS.into()));
        }
        let binding = match put.binding {
            None => None,
            Some(b) => {
                if old.is_some_and(|o| o.binding.is_none()) {
                    return Err(HostError::Conflict(
                        "Resource is a package and cannot be converted into a binding.".into(),
                    ));
                }
                if !(b.namespace == "_" || b.namespace == ns) {
                    return Err(HostError::InvalidArgs(BINDING_DOES_NOT_EXIST.into()));
                }
                match map.get(&b.name) {
                    None => return Err(HostError::InvalidArgs(BINDING_DOES_NOT_EXIST.into())),
                    Some(p) if p.binding.is_some() => return Err(HostError::InvalidArgs(BINDING_TO_BINDING.into())),
                    Some(_) if b.name == name => return Err(HostError::InvalidArgs(BINDING_TO_BINDING.into())),
                    Some(_) => Some(Binding { namespace: ns.clone(), name: b.name }),
                }
            }
        };
        let binding = binding.or_else(|| old.and_then(|o| o.binding.clone()));
        let version = match (put.version, old) {
            (Some(v), _) => v,
            (None, Some(o)) => bump(&o.version),
            (None, None) => "0.0.1".into(),
        };
        // The controller sets the `binding` annotation; one in the body is replaced.
        let mut annotations: Vec<KeyValue> = put
            .annotations
            .or_else(|| old.map(|o| o.annotations.clone()))
            .unwrap_or_default()
            .into_iter()
            .filter(|a| a.key != "binding")
            .collect();
        if let Some(b) = &binding {
            annotations.push(KeyValue::new("binding", json!({"namespace": b.namespace, "name": b.name})));
        }
        let info = PackageInfo {
            namespace: ns,
            name: name.to_string(),
            version,
            publish: put.publish.or(old.map(|o| o.publish)).unwrap_or(false),
            binding,
            parameters: put.parameters.or_else(|| old.map(|o| o.parameters.clone())).unwrap_or_default(),
            annotations,
            updated: now_ms(),
        };
        self.inner
            .store
            .save_json(&format!("{DIR}/{name}.json"), &info)
            .map_err(HostError::internal)?;
        map.insert(name.to_string(), info.clone());
        Ok(info)
    }

    /// Package `name` with its actions; a binding shows the bound package's actions and parameters
    /// merged under its own.
    pub async fn get_package(&self, name: &str) -> Result<PackageView, HostError> {
        let map = self.packages();
        let mut info = map.get(name).cloned().ok_or_else(|| HostError::NotFound(format!("package '{name}'")))?;
        let mut source = name.to_string();
        if let Some(b) = &info.binding {
            let bound = map.get(&b.name).ok_or_else(|| HostError::NotFound(format!("package '{}'", b.name)))?;
            info.parameters = merge(&bound.parameters, &info.parameters);
            source = bound.name.clone();
        }
        drop(map);
        let prefix = format!("{source}/");
        let actions = self
            .inner
            .lock()
            .functions
            .iter()
            .filter_map(|(k, e)| {
                Some(PackageAction {
                    name: k.strip_prefix(&prefix)?.to_string(),
                    version: e.info.version.clone(),
                    annotations: e.info.annotations.clone(),
                })
            })
            .collect();
        Ok(PackageView { info, actions, feeds: vec![] })
    }

    /// Deletes package `name` (a package only once it has no actions, or with `force` after deleting
    /// them; a binding always) and returns its record.
    pub async fn delete_package(&self, name: &str, force: bool) -> Result<PackageInfo, HostError> {
        if force && self.packages().get(name).is_some_and(|p| p.binding.is_none()) {
            let prefix = format!("{name}/");
            let actions: Vec<String> =
                self.inner.lock().functions.keys().filter(|k| k.starts_with(&prefix)).cloned().collect();
            for a in actions {
                match self.delete_function(&a).await {
                    Ok(()) | Err(HostError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let mut map = self.packages();
        let p = map.get(name).ok_or_else(|| HostError::NotFound(format!("package '{name}'")))?;
        if p.binding.is_none() {
            let n = self.actions_in(name);
            if n > 0 {
                let what = if n == 1 { "entity" } else { "entities" };
                return Err(HostError::Conflict(format!(
                    "Package not empty (contains {n} {what}). Set force param or delete package contents."
                )));
            }
        }
        let path = self.inner.store.root().join(DIR).join(format!("{name}.json"));
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(HostError::internal(e)),
            _ => {}
        }
        std::fs::File::open(self.inner.store.root().join(DIR))
            .and_then(|d| d.sync_all())
            .map_err(HostError::internal)?;
        Ok(map.remove(name).expect("checked under the lock"))
    }

    /// Every package and binding, by name.
    pub async fn list_packages(&self) -> Vec<PackageInfo> {
        self.packages().values().cloned().collect()
    }

    /// Resolves action `name` (`action` or `pkg/action`) to the function that runs and its package's
    /// parameters; 404 when the package (or the package a binding names) is missing.
    pub fn resolve_action(&self, name: &str) -> Result<Resolved, HostError> {
        resolve(&self.packages(), name)
    }

    /// The package whose actions package `pkg` offers: `pkg`, or the package a binding names.
    pub fn actions_package(&self, pkg: &str) -> Result<String, HostError> {
        let map = self.packages();
        let p = map.get(pkg).ok_or_else(|| HostError::NotFound(format!("package '{pkg}'")))?;
        Ok(p.binding.as_ref().map_or_else(|| pkg.to_string(), |b| b.name.clone()))
    }

    /// Action `name` as OpenWhisk's `GET` shows it: resolved through its package, its parameters merged
    /// over the package's.
    pub async fn get_action(&self, name: &str) -> Result<FunctionInfo, HostError> {
        let r = self.resolve_action(name)?;
        let mut f = self.get_function(&r.function).await?;
        f.parameters = merge(&r.package_parameters, &f.parameters);
        Ok(f)
    }

    /// Checks that action `name` may be created, updated or deleted: its package exists and is not a
    /// binding. The package map stays locked by the returned guard (hold it while the action changes, so
    /// the package cannot be deleted meanwhile).
    pub(crate) fn writable_action(&self, name: &str) -> Result<MutexGuard<'_, Packages>, HostError> {
        let map = self.packages();
        if let Some((pkg, _)) = package_of(name) {
            match map.get(pkg) {
                None => return Err(HostError::NotFound(format!("package '{pkg}'"))),
                Some(p) if p.binding.is_some() => return Err(HostError::InvalidArgs(NOT_ALLOWED_ON_BINDING.into())),
                Some(_) => {}
            }
        }
        Ok(map)
    }
}

/// `0.0.N` → `0.0.N+1` (OpenWhisk's `upPatch`); a version that is not `a.b.c` restarts at `0.0.1`.
fn bump(v: &str) -> String {
    let parts: Vec<u64> = v.split('.').filter_map(|p| p.parse().ok()).collect();
    match parts[..] {
        [a, b, c] => format!("{a}.{b}.{}", c + 1),
        _ => "0.0.1".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(k: &str, v: i64) -> KeyValue {
        KeyValue::new(k, v)
    }

    fn pkg(name: &str, binding: Option<&str>, params: Vec<KeyValue>) -> PackageInfo {
        PackageInfo {
            namespace: "guest".into(),
            name: name.into(),
            version: "0.0.1".into(),
            publish: false,
            binding: binding.map(|b| Binding { namespace: "guest".into(), name: b.into() }),
            parameters: params,
            annotations: vec![],
            updated: 1,
        }
    }

    #[test]
    fn later_parameters_win() {
        let m = merge(&[kv("a", 1), kv("b", 1)], &[kv("b", 2), kv("c", 2)]);
        assert_eq!(m, vec![kv("a", 1), kv("b", 2), kv("c", 2)]);
    }

    #[test]
    fn bindings_resolve_to_the_bound_package() {
        let mut map = BTreeMap::new();
        map.insert("p".to_string(), pkg("p", None, vec![kv("a", 1), kv("b", 1)]));
        map.insert("b".to_string(), pkg("b", Some("p"), vec![kv("b", 2)]));
        map.insert("dangling".to_string(), pkg("dangling", Some("gone"), vec![]));
        assert_eq!(resolve(&map, "f").unwrap(), Resolved { function: "f".into(), package_parameters: vec![] });
        assert_eq!(resolve(&map, "p/f").unwrap().package_parameters, vec![kv("a", 1), kv("b", 1)]);
        let r = resolve(&map, "b/f").unwrap();
        assert_eq!(r.function, "p/f");
        assert_eq!(r.package_parameters, vec![kv("a", 1), kv("b", 2)]);
        assert!(matches!(resolve(&map, "nope/f"), Err(HostError::NotFound(_))));
        assert!(matches!(resolve(&map, "dangling/f"), Err(HostError::NotFound(_))));
    }

    #[test]
    fn records_write_no_binding_as_an_empty_object() {
        let v = serde_json::to_value(pkg("p", None, vec![])).unwrap();
        assert_eq!(v["binding"], json!({}));
        let back: PackageInfo = serde_json::from_value(v).unwrap();
        assert_eq!(back.binding, None);
        let put: PackagePut = serde_json::from_value(json!({"binding": {"name": "p"}})).unwrap();
        assert_eq!(put.binding, Some(Binding { namespace: "_".into(), name: "p".into() }));
        assert!(serde_json::from_value::<PackagePut>(json!({"binding": 3})).is_err());
    }

    #[test]
    fn versions_bump_their_patch() {
        assert_eq!(bump("0.0.1"), "0.0.2");
        assert_eq!(bump("1.2.9"), "1.2.10");
        assert_eq!(bump("x"), "0.0.1");
    }
}
