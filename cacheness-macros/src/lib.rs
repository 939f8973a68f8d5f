//! The `#[memoize]` attribute of [cacheness](https://docs.rs/cacheness):
//! a function whose results persist, across runs and processes, in a
//! cacheness cache. Use it through the facade, `#[cacheness::memoize]`
//! (feature `macros`, on by default); its documentation there has the
//! examples.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{ToTokens, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Error, Expr, FnArg, GenericParam, Ident, ItemFn, Lit, LitStr, Pat, ReturnType, Type};

/// Stores the function's results in a cacheness cache, keyed by the
/// function's path, a version and its arguments: a call whose key is stored
/// returns the stored value without running the body, in this process or any
/// other that uses the cache.
///
/// ```ignore
/// #[cacheness::memoize(ttl = "1h")]
/// fn score(model: &str, n: u32) -> Vec<f64> { /* slow */ }
/// ```
///
/// Options, all optional, comma-separated:
///
/// - `cache = EXPR`: the cache, any expression that is or dereferences to a
///   `cacheness::Cache` (an `AsyncCache` or an `Arc<Cache>` for an `async fn`),
///   evaluated on each call. Without it, the process's default cache
///   (`cacheness::memoize::default_cache`).
/// - `ttl = "1h"`: how long results live, parsed at compile time
///   (humantime: `"90s"`, `"1h 30m"`, `"7d"`); or `ttl = EXPR`, a `Duration`.
///   Without it, the cache's default TTL.
/// - `version = N`: part of the key (default 0, which is left out of it);
///   bump it when the function changes what it returns, so old results are
///   never read.
/// - `skip(a, b)`: arguments left out of the key (a connection, a logger).
///   Arguments named `_` are always left out.
/// - `key = EXPR`: the key given by hand, any `Serialize` value, in place of
///   the arguments (which it may use).
/// - `name = "..."`: the function's name in the key; by default its path
///   (`module_path!()` and its name), which moving it changes.
/// - `prefix = "..."`: the prefix its entries are filed under; by default
///   the function's name in the key.
/// - `skip_none`: for a function returning `Option`, a `None` is returned
///   but not stored.
/// - `cache_errors = "log"` (default) or `"return"`: what a failure of the
///   cache does. Logged, the function runs uncached and its value is
///   returned; `"return"`, for a function returning `Result<T, E>` with
///   `E: From<cacheness::Error>`, returns the error.
///
/// A function returning `Result` stores only its `Ok` values. The value
/// stored must be `Serialize + DeserializeOwned` (for an `async fn`, also
/// `Send + 'static`), every argument in the key `Serialize`. Methods taking
/// `self` are refused: memoize a free function of what the result depends
/// on, and call it from the method.
#[proc_macro_attribute]
pub fn memoize(attr: TokenStream, item: TokenStream) -> TokenStream {
    let function = match syn::parse::<ItemFn>(item.clone()) {
        Ok(function) => function,
        Err(error) => {
            let mut out = TokenStream2::from(item);
            out.extend(
                Error::new(error.span(), "#[memoize] goes on a function").to_compile_error(),
            );
            return out.into();
        }
    };
    let expanded = Options::parse(attr.into()).and_then(|options| expand(options, &function));
    match expanded {
        Ok(expanded) => expanded.into(),
        Err(error) => {
            // The function as written, so its callers see no second error.
            let mut out = function.to_token_stream();
            out.extend(error.to_compile_error());
            out.into()
        }
    }
}

/// The attribute's options, as written.
#[derive(Default)]
struct Options {
    cache: Option<Expr>,
    ttl: Option<Expr>,
    version: Option<u64>,
    skip: Vec<Ident>,
    key: Option<Expr>,
    name: Option<LitStr>,
    prefix: Option<LitStr>,
    skip_none: Option<Span>,
    return_cache_errors: Option<Span>,
}

const OPTIONS: &str = "`cache = ...`, `ttl = \"1h\"`, `version = N`, `skip(arg, ...)`, `key = ...`, `name = \"...\"`, `prefix = \"...\"`, `skip_none`, `cache_errors = \"log\" | \"return\"`";

impl Options {
    fn parse(attr: TokenStream2) -> syn::Result<Options> {
        let mut options = Options::default();
        let mut seen: Vec<String> = Vec::new();
        let parser = syn::meta::parser(|meta| {
            let Some(option) = meta.path.get_ident().map(ToString::to_string) else {
                return Err(meta.error(format!("unknown option; the options are {OPTIONS}")));
            };
            if seen.contains(&option) {
                return Err(meta.error(format!("`{option}` is given twice")));
            }
            seen.push(option.clone());
            match option.as_str() {
                "cache" => options.cache = Some(meta.value()?.parse()?),
                "ttl" => options.ttl = Some(meta.value()?.parse()?),
                "key" => options.key = Some(meta.value()?.parse()?),
                "version" => {
                    let version: syn::LitInt = meta.value()?.parse()?;
                    options.version = Some(version.base10_parse()?);
                }
                "name" => options.name = Some(meta.value()?.parse()?),
                "prefix" => options.prefix = Some(meta.value()?.parse()?),
                "skip" => meta.parse_nested_meta(|argument| match argument.path.get_ident() {
                    Some(name) => {
                        options.skip.push(name.clone());
                        Ok(())
                    }
                    None => Err(argument.error("`skip` takes argument names")),
                })?,
                "skip_none" => options.skip_none = Some(meta.path.span()),
                "cache_errors" => {
                    let choice: LitStr = meta.value()?.parse()?;
                    match choice.value().as_str() {
                        "log" => {}
                        "return" => options.return_cache_errors = Some(choice.span()),
                        _ => {
                            return Err(Error::new(
                                choice.span(),
                                "`cache_errors` is \"log\" (the function runs uncached) or \"return\" (the error is returned)",
                            ));
                        }
                    }
                }
                _ => {
                    return Err(meta.error(format!(
                        "unknown option `{option}`; the options are {OPTIONS}"
                    )));
                }
            }
            Ok(())
        });
        syn::parse::Parser::parse2(parser, attr)?;
        Ok(options)
    }
}

/// What the function returns, as far as storing it goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Returns {
    /// The value, stored whatever it is.
    Value,
    /// A `Result`: only `Ok` is stored.
    Result,
    /// An `Option`: `None` is stored unless `skip_none`.
    Option,
}

fn returns(sig: &syn::Signature) -> syn::Result<(&Type, Returns)> {
    let ty = match &sig.output {
        ReturnType::Type(_, ty) => &**ty,
        ReturnType::Default => {
            return Err(Error::new(
                sig.ident.span(),
                "a memoized function must return the value to store; this one returns nothing",
            ));
        }
    };
    if let Type::Reference(reference) = ty {
        return Err(Error::new(
            reference.span(),
            "a memoized function cannot return a reference: its value is stored and read back as an owned one (return `String` rather than `&str`, `Vec<T>` rather than `&[T]`)",
        ));
    }
    if matches!(ty, Type::Tuple(tuple) if tuple.elems.is_empty()) {
        return Err(Error::new(
            ty.span(),
            "a memoized function must return the value to store; `()` holds nothing",
        ));
    }
    let last = match ty {
        Type::Path(path) if path.qself.is_none() => path.path.segments.last(),
        _ => None,
    };
    let kind = match last.map(|segment| segment.ident.to_string()) {
        Some(name) if name == "Result" => Returns::Result,
        Some(name) if name == "Option" => Returns::Option,
        _ => Returns::Value,
    };
    Ok((ty, kind))
}

/// An argument of the function that goes into the key.
struct KeyArgument<'a> {
    ident: &'a Ident,
    ty: &'a Type,
}

fn key_arguments<'a>(function: &'a ItemFn, skip: &[Ident]) -> syn::Result<Vec<KeyArgument<'a>>> {
    let mut arguments = Vec::new();
    let mut named = Vec::new();
    for input in &function.sig.inputs {
        let typed = match input {
            FnArg::Receiver(receiver) => {
                return Err(Error::new(
                    receiver.span(),
                    "#[memoize] cannot key a method on `self`: the result would have to be keyed by the whole receiver. Memoize a free function that takes what the result depends on, and call it from the method",
                ));
            }
            FnArg::Typed(typed) => typed,
        };
        match &*typed.pat {
            Pat::Wild(_) => {}
            Pat::Ident(binding) if binding.subpat.is_none() => {
                named.push(&binding.ident);
                if !skip.contains(&binding.ident) {
                    arguments.push(KeyArgument {
                        ident: &binding.ident,
                        ty: &typed.ty,
                    });
                }
            }
            pattern => {
                return Err(Error::new(
                    pattern.span(),
                    "#[memoize] keys each argument by its name: bind this one to a name (`pair: (u32, u32)`)",
                ));
            }
        }
    }
    for skipped in skip {
        if !named.contains(&skipped) {
            return Err(Error::new(
                skipped.span(),
                format!("`skip({skipped})`: the function has no argument `{skipped}`"),
            ));
        }
    }
    Ok(arguments)
}

fn expand(options: Options, function: &ItemFn) -> syn::Result<TokenStream2> {
    let sig = &function.sig;
    if let Some(constness) = &sig.constness {
        return Err(Error::new(
            constness.span(),
            "a `const fn` cannot be memoized: reading a cache is not const",
        ));
    }
    let (ret, kind) = returns(sig)?;
    if let (Some(span), false) = (options.skip_none, kind == Returns::Option) {
        return Err(Error::new(
            span,
            "`skip_none` is for a function returning `Option`",
        ));
    }
    if let (Some(span), false) = (options.return_cache_errors, kind == Returns::Result) {
        return Err(Error::new(
            span,
            "`cache_errors = \"return\"` is for a function returning `Result` (its error type must implement `From<cacheness::Error>`)",
        ));
    }
    let arguments = key_arguments(function, &options.skip)?;
    let is_async = sig.asyncness.is_some();
    let private = quote!(::cacheness::memoize::__private);

    let name = match &options.name {
        Some(name) => name.to_token_stream(),
        None => {
            let ident = sig.ident.unraw().to_string();
            quote!(::core::concat!(::core::module_path!(), "::", #ident))
        }
    };
    let version = options.version.unwrap_or(0);
    let mut key = quote!(#private::Key::new(#name, #version));
    for param in &sig.generics.params {
        match param {
            GenericParam::Type(param) => {
                let ident = &param.ident;
                let label = format!("#{}", ident.unraw());
                key.extend(quote!(.type_param(#label, ::core::any::type_name::<#ident>())));
            }
            GenericParam::Const(param) => {
                let ident = &param.ident;
                let label = format!("#{}", ident.unraw());
                key.extend(quote!(.arg(#label, &#ident)));
            }
            GenericParam::Lifetime(_) => {}
        }
    }
    match &options.key {
        Some(by_hand) => key.extend(quote_spanned!(by_hand.span()=> .by_hand(&(#by_hand)))),
        None => {
            for argument in &arguments {
                let ident = argument.ident;
                let label = ident.unraw().to_string();
                // The argument's type span: a type that is not `Serialize`
                // is reported on the argument.
                let value = quote_spanned!(argument.ty.span()=> &#ident);
                key.extend(quote!(.arg(#label, #value)));
            }
        }
    }

    let mut put = quote!(#private::Options::new(#name));
    if let Some(ttl) = &options.ttl {
        put.extend(ttl_tokens(ttl)?);
    }
    if let Some(prefix) = &options.prefix {
        put.extend(quote!(.prefix(#prefix)));
    }

    let call = Ident::new(
        &format!(
            "{}{}",
            match (kind, options.skip_none, options.return_cache_errors) {
                (Returns::Result, _, Some(_)) => "call_result_returning",
                (Returns::Result, _, None) => "call_result",
                (Returns::Option, Some(_), _) => "call_option",
                _ => "call",
            },
            if is_async { "_async" } else { "" }
        ),
        Span::call_site(),
    );
    let cache = match (&options.cache, is_async) {
        (Some(cache), false) => quote_spanned! {cache.span()=>
            ::core::result::Result::Ok(#private::sync_target(&(#cache)))
        },
        (Some(cache), true) => quote_spanned! {cache.span()=>
            ::core::result::Result::Ok(#private::async_target(&(#cache)))
        },
        (None, false) => quote!(#private::default_sync()),
        (None, true) => quote!(#private::default_async()),
    };
    let block = &function.block;
    // Checked on its own, so that a type that cannot be stored is reported
    // on the return type (a `Result`'s `Ok` type is checked by the call).
    let value_check = match kind {
        Returns::Result => TokenStream2::new(),
        Returns::Value | Returns::Option => quote_spanned! {ret.span()=>
            #private::stores::<#ret>();
        },
    };
    // The body runs as the computation: an async block (awaited by the
    // call) or a closure; `return` and `?` in it keep their meaning. Neither
    // is `move`: the body takes by value only what it consumes, so the
    // `cache` expression may borrow an argument the body uses too.
    let (computation, awaited) = if is_async {
        let computation = quote! {
            async {
                let __cacheness_value: #ret = #block;
                #[allow(unreachable_code)]
                __cacheness_value
            }
        };
        (computation, quote!(.await))
    } else {
        (quote!(|| -> #ret #block), TokenStream2::new())
    };
    let body = quote! {{
        #value_check
        let __cacheness_key = #key;
        #private::#call(#cache, __cacheness_key, #put, #computation) #awaited
    }};
    let attrs = &function.attrs;
    let vis = &function.vis;
    Ok(quote! {
        #(#attrs)*
        #vis #sig #body
    })
}

/// `.ttl(...)`: a string literal parsed now, anything else as written.
fn ttl_tokens(ttl: &Expr) -> syn::Result<TokenStream2> {
    let Expr::Lit(literal) = ttl else {
        return Ok(quote_spanned!(ttl.span()=> .ttl(#ttl)));
    };
    let Lit::Str(text) = &literal.lit else {
        return Err(Error::new(
            literal.span(),
            "`ttl` is a duration such as \"1h\" or \"90s\", or an expression of type `Duration`",
        ));
    };
    let duration = humantime::parse_duration(&text.value()).map_err(|error| {
        Error::new(
            text.span(),
            format!(
                "`ttl = {:?}` is not a duration ({error}); write one such as \"90s\", \"1h 30m\" or \"7d\"",
                text.value()
            ),
        )
    })?;
    if duration.is_zero() {
        return Err(Error::new(
            text.span(),
            "a TTL of zero stores values that are expired at once; leave `ttl` out for the cache's default",
        ));
    }
    let (secs, nanos) = (duration.as_secs(), duration.subsec_nanos());
    Ok(quote!(.ttl(::core::time::Duration::new(#secs, #nanos))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(attr: &str) -> syn::Result<Options> {
        Options::parse(attr.parse().expect("the test's tokens parse"))
    }

    fn expand_str(attr: &str, function: &str) -> syn::Result<String> {
        let function: ItemFn = syn::parse_str(function).expect("the test's function parses");
        Ok(expand(options(attr)?, &function)?.to_string())
    }

    fn message(result: syn::Result<impl Sized>) -> String {
        match result {
            Ok(_) => panic!("expected an error"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn every_option_parses() {
        let parsed = options(
            r#"cache = CACHE, ttl = "1h", version = 3, skip(conn, log), key = (a, b),
               name = "score", prefix = "scores", skip_none, cache_errors = "return""#,
        )
        .unwrap();
        assert!(parsed.cache.is_some() && parsed.ttl.is_some() && parsed.key.is_some());
        assert_eq!(parsed.version, Some(3));
        assert_eq!(parsed.skip.len(), 2);
        assert_eq!(parsed.name.unwrap().value(), "score");
        assert_eq!(parsed.prefix.unwrap().value(), "scores");
        assert!(parsed.skip_none.is_some() && parsed.return_cache_errors.is_some());
        assert!(
            options(r#"cache_errors = "log""#)
                .unwrap()
                .return_cache_errors
                .is_none()
        );
    }

    #[test]
    fn bad_options_are_refused_by_name() {
        assert!(message(options("colour = 1")).contains("unknown option `colour`"));
        assert!(message(options("version = 1, version = 2")).contains("`version` is given twice"));
        assert!(message(options(r#"cache_errors = "panic""#)).contains("\"log\""));
        assert!(message(options(r#"version = "2""#)).contains("expected integer literal"));
        assert!(message(options("skip(a::b)")).contains("argument names"));
    }

    #[test]
    fn ttl_strings_are_read_at_compile_time() {
        let expanded = expand_str(r#"ttl = "1h 30m""#, "fn f(x: u32) -> u32 { x }").unwrap();
        assert!(
            expanded.contains("Duration :: new (5400u64 , 0u32)"),
            "{expanded}"
        );
        assert!(
            message(expand_str(r#"ttl = "soon""#, "fn f() -> u32 { 1 }"))
                .contains("not a duration")
        );
        assert!(message(expand_str(r#"ttl = "0s""#, "fn f() -> u32 { 1 }")).contains("zero"));
        let expression = expand_str("ttl = DAY", "fn f() -> u32 { 1 }").unwrap();
        assert!(expression.contains(". ttl (DAY)"), "{expression}");
    }

    #[test]
    fn the_return_type_picks_the_call() {
        let call = |attr: &str, function: &str| {
            let expanded = expand_str(attr, function).unwrap();
            [
                "call_result_returning_async",
                "call_result_returning",
                "call_result_async",
                "call_result",
                "call_option_async",
                "call_option",
                "call_async",
                "call",
            ]
            .into_iter()
            .find(|call| expanded.contains(&format!(":: {call} (")))
            .unwrap()
        };
        assert_eq!(call("", "fn f() -> Vec<u8> { vec![] }"), "call");
        assert_eq!(
            call("", "fn f() -> io::Result<u8> { Ok(1) }"),
            "call_result"
        );
        assert_eq!(
            call(
                r#"cache_errors = "return""#,
                "fn f() -> Result<u8, E> { Ok(1) }"
            ),
            "call_result_returning"
        );
        assert_eq!(call("", "fn f() -> Option<u8> { None }"), "call");
        assert_eq!(
            call("skip_none", "fn f() -> Option<u8> { None }"),
            "call_option"
        );
        assert_eq!(call("", "async fn f() -> u8 { 1 }"), "call_async");
        assert_eq!(
            call("skip_none", "async fn f() -> Option<u8> { None }"),
            "call_option_async"
        );
    }

    #[test]
    fn misuses_are_explained() {
        let error = |attr: &str, function: &str| message(expand_str(attr, function));
        assert!(error("", "fn f(&self) -> u8 { 1 }").contains("method on `self`"));
        assert!(error("", "fn f(x: u8) { }").contains("returns nothing"));
        assert!(error("", "fn f(x: u8) -> () { }").contains("holds nothing"));
        assert!(error("", "const fn f() -> u8 { 1 }").contains("const fn"));
        assert!(error("", "fn f() -> &'static str { \"\" }").contains("cannot return a reference"));
        assert!(
            error("", "fn f((a, b): (u8, u8)) -> u8 { a }").contains("bind this one to a name")
        );
        assert!(error("skip(y)", "fn f(x: u8) -> u8 { x }").contains("no argument `y`"));
        assert!(error("skip_none", "fn f() -> u8 { 1 }").contains("returning `Option`"));
        assert!(
            error(r#"cache_errors = "return""#, "fn f() -> u8 { 1 }")
                .contains("returning `Result`")
        );
    }

    #[test]
    fn the_key_holds_the_arguments_not_skipped() {
        let expanded = expand_str(
            "skip(conn), version = 2",
            "fn f<T: Clone, const N: usize>(conn: C, r#type: u8, _: u8) -> u8 { 1 }",
        )
        .unwrap();
        assert!(expanded.contains("Key :: new"), "{expanded}");
        assert!(expanded.contains("2u64"), "{expanded}");
        assert!(
            expanded.contains(r#". arg ("type" , & r#type)"#),
            "{expanded}"
        );
        assert!(!expanded.contains(r#""conn""#), "{expanded}");
        assert!(expanded.contains(r##". type_param ("#T""##), "{expanded}");
        assert!(expanded.contains(r##". arg ("#N" , & N)"##), "{expanded}");
        let by_hand = expand_str("key = (x / 10)", "fn f(x: u8) -> u8 { x }").unwrap();
        assert!(by_hand.contains(". by_hand (& ((x / 10)))"), "{by_hand}");
        assert!(!by_hand.contains(r#". arg ("x""#), "{by_hand}");
    }
}
