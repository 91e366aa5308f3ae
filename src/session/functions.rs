//! `CREATE FUNCTION` and `DROP FUNCTION` for functions written in SQL (see
//! [`crate::catalog::function`] and [`crate::sql::functions`]).

use datafusion::sql::sqlparser::ast::{CreateFunction, DropFunction};

use super::{Output, Session};
use crate::error::{Error, Result};
use crate::sql::functions::{function_def, listed_signature};
use crate::sql::table_name;

impl Session<'_> {
    /// `CREATE [OR REPLACE] FUNCTION`.
    pub(super) fn create_function(&mut self, create: &CreateFunction) -> Result<Output> {
        let def = function_def(create)?;
        let catalog = self.db.catalog();
        catalog.check_schema(&def.name)?;
        catalog.functions().create(def, create.or_replace)?;
        Ok(Output::Command("CREATE FUNCTION".into()))
    }

    /// `DROP FUNCTION [IF EXISTS] name[(types)], ...`.
    pub(super) fn drop_functions(&mut self, drop: &DropFunction) -> Result<Output> {
        let functions = self.db.catalog().functions().clone();
        for desc in &drop.func_desc {
            let name = table_name(&desc.name)?;
            let signature = match &desc.args {
                Some(args) => Some(listed_signature(&name, args)?),
                None => {
                    let named = functions.named(&name);
                    if named.len() > 1 {
                        return Err(Error::coded(
                            "42725",
                            format!(
                                "function name \"{name}\" is not unique (specify the argument list to select the function unambiguously)"
                            ),
                        ));
                    }
                    named.first().map(|f| f.signature())
                }
            };
            let dropped = match &signature {
                Some(signature) => functions.remove(&name, signature)?,
                None => false,
            };
            if !dropped {
                let shown = signature.unwrap_or_else(|| name.clone());
                if !drop.if_exists {
                    return Err(Error::coded(
                        "42883",
                        format!("function {shown} does not exist"),
                    ));
                }
                self.notice(
                    "00000",
                    format!("function {shown} does not exist, skipping"),
                );
            }
        }
        Ok(Output::Command("DROP FUNCTION".into()))
    }
}
