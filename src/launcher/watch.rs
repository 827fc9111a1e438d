//! File watching for restarts: `notify` for events, `ignore` for the rules.

use std::path::{Path, PathBuf};

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use notify::event::{AccessKind, AccessMode, EventKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};

use crate::error::{Error, Result};

/// Never worth a restart: VCS data, bytecode, virtual environments, build
/// output, caches, editor droppings.
const BUILTIN_IGNORES: &[&str] = &[
    ".git/",
    ".hg/",
    ".svn/",
    ".jj/",
    "__pycache__/",
    "*.pyc",
    "*.pyo",
    ".venv/",
    "venv/",
    ".tox/",
    ".nox/",
    "target/",
    "node_modules/",
    ".mypy_cache/",
    ".pytest_cache/",
    ".ruff_cache/",
    // Editors' temporary and swap files: vim, emacs, JetBrains, `sed -i`
    // (which writes sedXXXXXX beside the file, then renames it over it).
    "*.swp",
    "*.swx",
    "*.swo",
    "*~",
    "4913",
    ".#*",
    "\\#*#", // a leading # would start a comment
    "*___jb_tmp___",
    "*___jb_old___",
    "sed??????",
];

/// Decides which changed paths matter.
pub struct ChangeFilter {
    roots: Vec<(PathBuf, Gitignore)>,
}

impl ChangeFilter {
    pub fn new(roots: &[PathBuf], extra: &[String]) -> Result<Self> {
        let mut built = Vec::new();
        for root in roots {
            let root = std::fs::canonicalize(root)
                .map_err(|e| Error::os(format!("--watch {}", root.display()), e))?;
            let mut builder = GitignoreBuilder::new(&root);
            for pattern in BUILTIN_IGNORES {
                builder
                    .add_line(None, pattern)
                    .map_err(|e| Error::InvalidOption {
                        option: "--ignore",
                        problem: e.to_string(),
                    })?;
            }
            for pattern in extra {
                builder
                    .add_line(None, pattern)
                    .map_err(|e| Error::InvalidOption {
                        option: "--ignore",
                        problem: format!("{pattern:?}: {e}"),
                    })?;
            }
            let gitignore = root.join(".gitignore");
            if gitignore.is_file() {
                if let Some(e) = builder.add(&gitignore) {
                    return Err(Error::InvalidOption {
                        option: "--watch",
                        problem: format!("{}: {e}", gitignore.display()),
                    });
                }
            }
            let matcher = builder.build().map_err(|e| Error::InvalidOption {
                option: "--ignore",
                problem: e.to_string(),
            })?;
            built.push((root, matcher));
        }
        Ok(ChangeFilter { roots: built })
    }

    /// Should a change at `path` restart the child?
    pub fn matters(&self, path: &Path) -> bool {
        let Some((root, matcher)) = self.roots.iter().find(|(root, _)| path.starts_with(root))
        else {
            return false;
        };
        let is_dir = path.is_dir();
        if matcher
            .matched_path_or_any_parents(path, is_dir)
            .is_ignore()
        {
            return false;
        }
        // Any virtual environment, whatever its name, has a pyvenv.cfg.
        let mut dir = if is_dir { Some(path) } else { path.parent() };
        while let Some(d) = dir {
            if d.join("pyvenv.cfg").is_file() {
                return false;
            }
            if d == root {
                break;
            }
            dir = d.parent();
        }
        true
    }
}

fn is_change(kind: EventKind) -> bool {
    // A file closed after writing is a change; opening or reading one is not.
    matches!(
        kind,
        EventKind::Create(_)
            | EventKind::Modify(_)
            | EventKind::Remove(_)
            | EventKind::Access(AccessKind::Close(AccessMode::Write))
    )
}

/// Watches `roots` recursively; calls `on_change` (from notify's thread) with
/// every changed path the filter lets through.
pub fn watch(
    roots: &[PathBuf],
    filter: ChangeFilter,
    on_change: impl Fn(PathBuf) + Send + 'static,
) -> Result<RecommendedWatcher> {
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            if is_change(event.kind) {
                for path in event.paths {
                    if filter.matters(&path) {
                        on_change(path);
                    }
                }
            }
        }
    })
    .map_err(|e| Error::os("starting the file watcher", std::io::Error::other(e)))?;
    for root in roots {
        watcher.watch(root, RecursiveMode::Recursive).map_err(|e| {
            Error::os(
                format!("--watch {}", root.display()),
                std::io::Error::other(e),
            )
        })?;
    }
    Ok(watcher)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignore_rules() {
        let root = std::env::temp_dir().join(format!("listenfd-watch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for d in ["src/__pycache__", ".git", "env1", "node_modules/x", "build"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("env1/pyvenv.cfg"), "home = /usr\n").unwrap();
        std::fs::write(root.join(".gitignore"), "build/\n*.log\n").unwrap();
        let filter = ChangeFilter::new(std::slice::from_ref(&root), &["*.tmp".into()]).unwrap();
        let root = std::fs::canonicalize(&root).unwrap();
        let cases = [
            ("src/app.py", true),
            ("src/templates/index.html", true),
            ("src/__pycache__/app.cpython-311.pyc", false),
            ("src/app.pyc", false),
            (".git/index", false),
            ("env1/lib/site.py", false),
            ("node_modules/x/y.js", false),
            ("build/out.txt", false),
            ("server.log", false),
            ("notes.tmp", false),
            ("sedJUPE9s", false),
            ("app.py.swo", false),
            ("#app.py#", false),
            ("app.py___jb_tmp___", false),
            ("sedimentary.py", true),
            ("target/debug/x", false),
            (".venv/bin/python", false),
        ];
        for (rel, expected) in cases {
            assert_eq!(filter.matters(&root.join(rel)), expected, "{rel}");
        }
        assert!(!filter.matters(Path::new("/elsewhere/app.py")));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
