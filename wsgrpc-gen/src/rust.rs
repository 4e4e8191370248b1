//! The Rust output: prost message types, their proto3 JSON (pbjson) and,
//! for every service, the bridge's dispatch table.
//!
//! prost-build resolves every type to its Rust path (extern paths, nested
//! modules, keywords), so the dispatch table is rendered from inside prost's
//! service hook and reuses that resolution instead of repeating it.

use std::collections::HashMap;

use heck::{ToShoutySnakeCase, ToSnakeCase};
use proc_macro2::TokenStream;
use prost_build::{Module, ServiceGenerator};
use prost_types::FileDescriptorProto;
use quote::{format_ident, quote};

use crate::model::{self, MethodKind};
use crate::{Error, GeneratedFile};

/// Where the well-known types come from: pbjson's copies carry proto3 JSON,
/// but for FieldMask, whose JSON form pbjson-types lacks, and Duration and
/// Timestamp, whose JSON pbjson-types checks too little (two minus signs,
/// years outside 1 to 9999).
const EXTERN_PATHS: [(&str, &str); 4] = [
    (".google.protobuf", "::pbjson_types"),
    (
        ".google.protobuf.FieldMask",
        "::wsgrpc_runtime::well_known::FieldMask",
    ),
    (
        ".google.protobuf.Duration",
        "::wsgrpc_runtime::well_known::Duration",
    ),
    (
        ".google.protobuf.Timestamp",
        "::wsgrpc_runtime::well_known::Timestamp",
    ),
];

/// Renders one `{package}.rs` per package of `to_generate`.
pub(crate) fn render(
    descriptors: &[FileDescriptorProto],
    to_generate: &[String],
    extra_services: Option<Box<dyn ServiceGenerator>>,
) -> Result<Vec<GeneratedFile>, Error> {
    let files: Vec<&FileDescriptorProto> = descriptors
        .iter()
        .filter(|file| to_generate.contains(&file.name().to_owned()))
        .collect();

    let mut config = prost_build::Config::new();
    config.compile_well_known_types();
    for (proto, rust) in EXTERN_PATHS {
        config.extern_path(proto, rust);
    }
    config.service_generator(Box::new(BridgeGenerator {
        extra: extra_services,
    }));
    // prost needs every descriptor to decide what its types can derive;
    // only the packages asked for are kept.
    let requests = descriptors
        .iter()
        .map(|file| {
            (
                Module::from_protobuf_package_name(file.package()),
                file.clone(),
            )
        })
        .collect();
    let wanted: Vec<Module> = files
        .iter()
        .map(|file| Module::from_protobuf_package_name(file.package()))
        .collect();
    let mut messages = config
        .generate(requests)
        .map_err(|err| Error::Generate(format!("prost-build: {err}")))?;
    messages.retain(|module, _| wanted.contains(module));

    let mut json = pbjson_build::Builder::new();
    for file in descriptors {
        json.register_file_descriptor(file.clone());
    }
    for (proto, rust) in EXTERN_PATHS {
        json.extern_path(proto, rust);
    }
    let mut packages: Vec<String> = files.iter().map(|f| format!(".{}", f.package())).collect();
    packages.sort();
    packages.dedup();
    let json_impls = json
        .generate(&packages, |_| Ok(Vec::new()))
        .map_err(|err| Error::Generate(format!("pbjson-build: {err}")))?;
    let mut json_by_package: HashMap<String, Vec<u8>> = json_impls
        .into_iter()
        .map(|(package, code)| (package.to_string(), code))
        .collect();

    let mut out = Vec::new();
    let mut modules: Vec<Module> = messages.keys().cloned().collect();
    modules.sort();
    for module in modules {
        let package = module.parts().collect::<Vec<_>>().join(".");
        let mut content = messages.remove(&module).unwrap_or_default();
        if let Some(code) = json_by_package.remove(&package) {
            content.push_str("// Proto3 JSON for the types above, by pbjson-build.\n");
            content.push_str(&String::from_utf8_lossy(&code));
        }
        out.push(GeneratedFile {
            name: module.to_file_name_or("_"),
            content,
        });
    }
    Ok(out)
}

/// Appends a bridge module to every service prost generates, after the
/// output of any other service generator (tonic's server, say).
struct BridgeGenerator {
    extra: Option<Box<dyn ServiceGenerator>>,
}

impl ServiceGenerator for BridgeGenerator {
    fn generate(&mut self, service: prost_build::Service, buf: &mut String) {
        if let Some(extra) = &mut self.extra {
            extra.generate(service.clone(), buf);
        }
        let (model, rust_types) = from_prost(&service);
        let tokens = bridge_module(&model, &rust_types);
        let file = syn::parse2::<syn::File>(tokens).expect("the bridge module is valid Rust");
        buf.push_str(&prettyplease::unparse(&file));
    }

    fn finalize(&mut self, buf: &mut String) {
        if let Some(extra) = &mut self.extra {
            extra.finalize(buf);
        }
    }

    fn finalize_package(&mut self, package: &str, buf: &mut String) {
        if let Some(extra) = &mut self.extra {
            extra.finalize_package(package, buf);
        }
    }
}

/// The model of a service as prost sees it, and the Rust path of each of
/// its message types.
fn from_prost(service: &prost_build::Service) -> (model::Service, HashMap<String, String>) {
    let strip = |name: &str| name.strip_prefix('.').unwrap_or(name).to_owned();
    let mut rust_types = HashMap::new();
    let methods = service
        .methods
        .iter()
        .map(|method| {
            rust_types.insert(strip(&method.input_proto_type), method.input_type.clone());
            rust_types.insert(strip(&method.output_proto_type), method.output_type.clone());
            model::Method {
                name: method.proto_name.clone(),
                kind: MethodKind::from_streaming(method.client_streaming, method.server_streaming),
                input_type: strip(&method.input_proto_type),
                output_type: strip(&method.output_proto_type),
                comments: comments(&method.comments),
            }
        })
        .collect();
    let full_name = if service.package.is_empty() {
        service.proto_name.clone()
    } else {
        format!("{}.{}", service.package, service.proto_name)
    };
    let model = model::Service {
        name: service.proto_name.clone(),
        full_name,
        methods,
        comments: comments(&service.comments),
    };
    (model, rust_types)
}

fn comments(comments: &prost_build::Comments) -> model::Comments {
    model::Comments {
        leading: comments
            .leading
            .iter()
            .map(|line| format!("{line}\n"))
            .collect(),
        trailing: comments
            .trailing
            .iter()
            .map(|line| format!("{line}\n"))
            .collect(),
    }
}

/// `pub mod {service}_bridge { … }`: the service's table for the bridge.
pub(crate) fn bridge_module(
    service: &model::Service,
    rust_types: &HashMap<String, String>,
) -> TokenStream {
    let module = format_ident!("{}_bridge", service.name.to_snake_case());
    let full_name = &service.full_name;
    let service_doc = doc_lines(&service.comments);
    let module_doc = format!(" The wsgrpc bridge's table for `{full_name}`.");
    let service_fn_doc =
        format!(" The table of `{full_name}`, for `wsgrpc_runtime::Bridge::builder().service(…)`.");

    let constants = service.methods.iter().map(|method| {
        let constant = format_ident!("{}", method.name.to_shouty_snake_case());
        let path = format!("{full_name}/{}", method.name);
        let doc = doc_lines(&method.comments);
        let summary = format!(" `{path}`: {}.", kind_words(method.kind));
        quote! {
            #[doc = #summary]
            #(#[doc = ""] #[doc = #doc])*
            pub const #constant: &str = #path;
        }
    });
    let methods = service.methods.iter().map(|method| {
        let input = rust_type(rust_types, &method.input_type);
        let output = rust_type(rust_types, &method.output_type);
        let name = &method.name;
        let kind = format_ident!("{}", method.kind.name());
        quote! { Method::new::<#input, #output>(#name, MethodKind::#kind) }
    });

    quote! {
        #[doc = #module_doc]
        #(#[doc = ""] #[doc = #service_doc])*
        pub mod #module {
            use wsgrpc_runtime::codegen::*;

            /// The service's fully-qualified name.
            pub const SERVICE_NAME: &str = #full_name;

            #(#constants)*

            #[doc = #service_fn_doc]
            pub fn service() -> Service {
                Service::new(SERVICE_NAME, [#(#methods),*])
            }
        }
    }
}

fn kind_words(kind: MethodKind) -> &'static str {
    match kind {
        MethodKind::Unary => "unary",
        MethodKind::ServerStreaming => "server streaming",
        MethodKind::ClientStreaming => "client streaming",
        MethodKind::BidiStreaming => "bidirectional streaming",
    }
}

/// Doc comment lines, each with the leading space rustdoc expects.
fn doc_lines(comments: &model::Comments) -> Vec<String> {
    comments
        .lines()
        .iter()
        .map(|line| format!(" {line}"))
        .collect()
}

/// The path of a message type from inside the bridge module, which sits one
/// level below the package's module.
fn rust_type(rust_types: &HashMap<String, String>, proto_name: &str) -> syn::Type {
    let path = &rust_types[proto_name];
    let path = if path.starts_with("::") || path.starts_with("crate::") {
        path.clone()
    } else {
        format!("super::{path}")
    };
    syn::parse_str(&path).expect("prost-build renders valid type paths")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_one_constant_and_one_entry_per_method() {
        let service = model::Service {
            name: "Match".into(),
            full_name: "a.b.Match".into(),
            methods: vec![model::Method {
                name: "Self".into(),
                kind: MethodKind::BidiStreaming,
                input_type: "a.b.Self".into(),
                output_type: "google.protobuf.Empty".into(),
                comments: model::Comments {
                    leading: vec![" Plays.\n".into()],
                    trailing: vec![],
                },
            }],
            comments: model::Comments::default(),
        };
        let types = HashMap::from([
            ("a.b.Self".to_owned(), "Self_".to_owned()),
            (
                "google.protobuf.Empty".to_owned(),
                "::pbjson_types::Empty".to_owned(),
            ),
        ]);
        let file = syn::parse2::<syn::File>(bridge_module(&service, &types)).unwrap();
        let code = prettyplease::unparse(&file);
        assert!(code.contains("pub mod match_bridge {"), "{code}");
        assert!(
            code.contains(r#"pub const SELF: &str = "a.b.Match/Self";"#),
            "{code}"
        );
        assert!(code.contains("/// Plays."), "{code}");
        let entry: String = code.split_whitespace().collect();
        assert!(
            entry.contains(r#"Method::new::<super::Self_,::pbjson_types::Empty,>("Self",MethodKind::BidiStreaming)"#),
            "{code}"
        );
    }
}
