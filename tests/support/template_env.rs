//! The environment `template.yaml` gives a Lambda function, resolved for a local stack: the
//! `Globals` variables merged with the function's own, each value evaluated the way
//! CloudFormation would with the parameters' defaults (`!Ref` of a parameter, a pseudo
//! parameter or a resource, `!Sub`, `!GetAtt ...Arn`, `!If` over the template's `Conditions`).
//! A construct it does not know fails the test, naming it, rather than guessing.

use std::collections::{BTreeMap, HashMap};

use serde_yaml::Value;

/// The template, with the names a stack of it gets.
pub struct Template {
    pub doc: Value,
    /// `AWS::StackName`.
    pub stack: String,
    /// `AWS::Region`.
    pub region: String,
    /// `AWS::AccountId`.
    pub account: String,
    /// Parameter values instead of the defaults.
    pub parameters: HashMap<String, String>,
}

/// A YAML value's content, without its `!Tag`.
pub fn untag(v: &Value) -> &Value {
    match v {
        Value::Tagged(t) => &t.value,
        other => other,
    }
}

fn scalar(v: &Value) -> Option<String> {
    match untag(v) {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl Template {
    /// Reads `template.yaml` for a stack of this name (us-east-1, moto's account).
    pub fn load(path: &std::path::Path, stack: &str, region: &str, account: &str) -> Template {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        Template {
            doc: serde_yaml::from_str(&text).expect("template.yaml parses"),
            stack: stack.into(),
            region: region.into(),
            account: account.into(),
            parameters: HashMap::new(),
        }
    }

    /// A resource's definition.
    pub fn resource(&self, logical_id: &str) -> &Value {
        let r = &self.doc["Resources"][logical_id];
        assert!(!r.is_null(), "template.yaml has no resource {logical_id}");
        r
    }

    /// The logical id of the `AWS::Serverless::Function` whose `BuildProperties.Binary` is
    /// `binary`.
    pub fn function_by_binary(&self, binary: &str) -> String {
        let resources = self.doc["Resources"].as_mapping().expect("Resources");
        let found: Vec<String> = resources
            .iter()
            .filter(|(_, r)| {
                scalar(&r["Type"]).as_deref() == Some("AWS::Serverless::Function")
                    && scalar(&r["Metadata"]["BuildProperties"]["Binary"]).as_deref()
                        == Some(binary)
            })
            .filter_map(|(k, _)| scalar(k))
            .collect();
        assert_eq!(
            found.len(),
            1,
            "one function of template.yaml builds binary {binary}: {found:?}"
        );
        found[0].clone()
    }

    /// A function property, from the function or else from `Globals.Function`, resolved.
    pub fn function_property(&self, logical_id: &str, name: &str) -> Option<String> {
        let own = &self.resource(logical_id)["Properties"][name];
        let v = if own.is_null() {
            &self.doc["Globals"]["Function"][name]
        } else {
            own
        };
        (!v.is_null()).then(|| self.eval(v))
    }

    /// The environment variables the template sets for a function: `Globals.Function`'s, then
    /// the function's own (which win), resolved.
    pub fn function_environment(&self, logical_id: &str) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        for vars in [
            &self.doc["Globals"]["Function"]["Environment"]["Variables"],
            &self.resource(logical_id)["Properties"]["Environment"]["Variables"],
        ] {
            if let Some(map) = untag(vars).as_mapping() {
                for (k, v) in map {
                    env.insert(scalar(k).expect("variable name"), self.eval(v));
                }
            }
        }
        env
    }

    /// A parameter's value: the override, else its default.
    pub fn parameter(&self, name: &str) -> Option<String> {
        if let Some(v) = self.parameters.get(name) {
            return Some(v.clone());
        }
        let p = &self.doc["Parameters"][name];
        if p.is_null() {
            return None;
        }
        Some(scalar(&p["Default"]).unwrap_or_else(|| panic!("parameter {name} has no default")))
    }

    fn pseudo(&self, name: &str) -> Option<String> {
        Some(match name {
            "AWS::StackName" => self.stack.clone(),
            "AWS::Region" => self.region.clone(),
            "AWS::AccountId" => self.account.clone(),
            "AWS::Partition" => "aws".into(),
            "AWS::URLSuffix" => "amazonaws.com".into(),
            _ => return None,
        })
    }

    /// `!Ref NAME`: a pseudo parameter, a parameter, or a resource's reference value.
    pub fn reference(&self, name: &str) -> String {
        if let Some(v) = self.pseudo(name).or_else(|| self.parameter(name)) {
            return v;
        }
        let r = self.resource(name);
        let p = &r["Properties"];
        let ty = scalar(&r["Type"]).unwrap_or_default();
        let named = |property: &str| {
            let v = &p[property];
            assert!(
                !v.is_null(),
                "!Ref {name}: the {ty} has no {property} (a generated name cannot be resolved)"
            );
            self.eval(v)
        };
        match ty.as_str() {
            "AWS::DynamoDB::Table" => named("TableName"),
            "AWS::S3::Bucket" => named("BucketName"),
            "AWS::Logs::LogGroup" => named("LogGroupName"),
            "AWS::SNS::Topic" => format!(
                "arn:aws:sns:{}:{}:{}",
                self.region,
                self.account,
                named("TopicName")
            ),
            "AWS::Serverless::Function" | "AWS::Lambda::Function" => named("FunctionName"),
            other => panic!("!Ref {name}: resources of type {other} are not supported here"),
        }
    }

    /// `!GetAtt NAME.ATTRIBUTE` (only `Arn`, for the resource types the functions use).
    pub fn get_att(&self, name: &str, attribute: &str) -> String {
        let ty = scalar(&self.resource(name)["Type"]).unwrap_or_default();
        let (region, account) = (&self.region, &self.account);
        let id = self.reference(name);
        match (ty.as_str(), attribute) {
            ("AWS::DynamoDB::Table", "Arn") => {
                format!("arn:aws:dynamodb:{region}:{account}:table/{id}")
            }
            ("AWS::S3::Bucket", "Arn") => format!("arn:aws:s3:::{id}"),
            ("AWS::SNS::Topic", "TopicArn") => id,
            ("AWS::Logs::LogGroup", "Arn") => {
                format!("arn:aws:logs:{region}:{account}:log-group:{id}:*")
            }
            ("AWS::Serverless::Function" | "AWS::Lambda::Function", "Arn") => {
                format!("arn:aws:lambda:{region}:{account}:function:{id}")
            }
            _ => panic!("!GetAtt {name}.{attribute} ({ty}) is not supported here"),
        }
    }

    /// `!Sub "...${Name}...${Resource.Attribute}..."`.
    fn sub(&self, text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .unwrap_or_else(|| panic!("!Sub {text:?}: unclosed ${{"));
            let name = &after[..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else if let Some((resource, attribute)) =
                name.split_once('.').filter(|_| !name.starts_with("AWS::"))
            {
                out.push_str(&self.get_att(resource, attribute));
            } else {
                out.push_str(&self.reference(name));
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out
    }

    /// A condition of the template's `Conditions`, evaluated.
    pub fn condition(&self, name: &str) -> bool {
        let c = &self.doc["Conditions"][name];
        assert!(!c.is_null(), "template.yaml has no condition {name}");
        self.truth(c)
    }

    fn truth(&self, v: &Value) -> bool {
        let Value::Tagged(t) = v else {
            if let Some(name) = v["Condition"].as_str() {
                return self.condition(name);
            }
            panic!("not a condition: {v:?}");
        };
        let args = t.value.as_sequence();
        let arg = |i: usize| &args.unwrap_or_else(|| panic!("{}: a list", t.tag))[i];
        match t.tag.to_string().trim_start_matches('!') {
            "Equals" => self.eval(arg(0)) == self.eval(arg(1)),
            "Not" => !self.truth(arg(0)),
            "And" => args.unwrap().iter().all(|c| self.truth(c)),
            "Or" => args.unwrap().iter().any(|c| self.truth(c)),
            "Condition" => self.condition(&scalar(&t.value).unwrap()),
            other => panic!("condition function !{other} is not supported here"),
        }
    }

    /// A value, evaluated to the string the function's environment gets.
    pub fn eval(&self, v: &Value) -> String {
        let Value::Tagged(t) = v else {
            return scalar(v).unwrap_or_else(|| panic!("cannot evaluate {v:?}"));
        };
        let tag = t.tag.to_string();
        match tag.trim_start_matches('!') {
            "Ref" => self.reference(&scalar(&t.value).expect("!Ref NAME")),
            "Sub" => match &t.value {
                Value::String(s) => self.sub(s),
                other => panic!("!Sub with variables is not supported here: {other:?}"),
            },
            "GetAtt" => {
                let (name, attribute) = match &t.value {
                    Value::String(s) => {
                        let (n, a) = s.split_once('.').expect("!GetAtt NAME.ATTRIBUTE");
                        (n.to_string(), a.to_string())
                    }
                    Value::Sequence(s) => (scalar(&s[0]).unwrap(), scalar(&s[1]).unwrap()),
                    other => panic!("!GetAtt {other:?}"),
                };
                self.get_att(&name, &attribute)
            }
            "If" => {
                let args = t.value.as_sequence().expect("!If [condition, then, else]");
                let name = scalar(&args[0]).expect("!If condition name");
                self.eval(&args[if self.condition(&name) { 1 } else { 2 }])
            }
            other => panic!("!{other} is not supported here"),
        }
    }
}
