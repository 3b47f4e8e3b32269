//! One test per medium, on referrers as browsers send them, and the
//! database loader on small Snowplow-format files written here.
//!
//! Over 600 lines for a reason: most of it is tables of real referrers, one
//! case a line.

use fuwa_api::record;
use fuwa_api::testing::{build_context, filter_section, map};
use fuwa_api::{ConfigError, EventTime, Filter, FilterResult};
use fuwa_filter_referrer::database;
use rmpv::Value;

fn try_build(src: &str) -> Result<Box<dyn Filter>, Vec<ConfigError>> {
    fuwa_filter_referrer::build(&filter_section(src), &build_context("referrer.0", "UTC"))
}

fn build(src: &str) -> Box<dyn Filter> {
    try_build(src).unwrap_or_else(|e| panic!("{e:?}"))
}

const CONFIG: &str = r#"
own_hosts = ["shop.example", "*.shop.example"]
url_key = "url"
"#;

fn run(f: &dyn Filter, rec: Value) -> Value {
    let mut rec = rec;
    let mut t = EventTime::new(1, 2);
    assert!(matches!(
        fuwa_api::testing::filter_value(&f, "tag", &mut t, &mut rec),
        FilterResult::Keep
    ));
    record::get(&rec, &record::path("ref"))
        .expect("ref is set")
        .clone()
}

fn referrer(f: &dyn Filter, r: &str) -> Value {
    run(f, map(&[("referrer", r.into())]))
}

fn s(v: &Value, p: &str) -> Option<String> {
    record::get_str(v, &[p.to_string()]).map(str::to_string)
}

/// referrer → (medium, source, term)
fn check(f: &dyn Filter, cases: &[(&str, &str, &str, Option<&str>)]) {
    let mut failed = Vec::new();
    for (r, medium, source, term) in cases {
        let out = referrer(f, r);
        let got = (s(&out, "medium"), s(&out, "source"), s(&out, "term"));
        let want = (
            Some(medium.to_string()),
            (!source.is_empty()).then(|| source.to_string()),
            term.map(str::to_string),
        );
        if got != want {
            failed.push(format!("{r}\n   got  {got:?}\n   want {want:?}"));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[test]
fn search_engines_worldwide_in_several_languages_and_charsets() {
    let f = build(CONFIG);
    check(
        f.as_ref(),
        &[
            // Google and its country domains, image search
            (
                "https://www.google.com/search?q=gateway+oracle+cards&hl=en&client=safari",
                "search",
                "Google",
                Some("gateway oracle cards"),
            ),
            (
                "http://www.google.fr/imgres?q=Ogham+the+celtic+oracle&hl=fr&tbm=isch",
                "search",
                "Google Images",
                Some("Ogham the celtic oracle"),
            ),
            (
                "https://www.google.com.au/search?q=kangaroo",
                "search",
                "Google",
                Some("kangaroo"),
            ),
            ("https://www.google.co.in/", "search", "Google", None),
            (
                "https://images.google.com/search?q=cat",
                "search",
                "Google Images",
                Some("cat"),
            ),
            (
                "https://www.google.co.jp/search?q=%E6%9D%B1%E4%BA%AC&ie=UTF-8&oe=UTF-8",
                "search",
                "Google",
                Some("東京"),
            ),
            // a Shift_JIS query that says so
            (
                "https://www.google.co.jp/search?q=%93%8C%8B%9E&ie=Shift_JIS",
                "search",
                "Google",
                Some("東京"),
            ),
            (
                "android-app://com.google.android.googlequicksearchbox/",
                "search",
                "Google",
                None,
            ),
            // Bing, its image search and country hosts
            (
                "https://www.bing.com/search?q=hello+world&form=QBLH",
                "search",
                "Bing",
                Some("hello world"),
            ),
            (
                "https://www.bing.com/images/search?q=cat&form=HDRSC2",
                "search",
                "Bing Images",
                Some("cat"),
            ),
            (
                "https://cn.bing.com/search?q=%E4%BD%A0%E5%A5%BD",
                "search",
                "Bing",
                Some("你好"),
            ),
            // Yahoo! regional, image search, a `;_ylt=` path, Yahoo! JAPAN in EUC-JP
            (
                "http://es.search.yahoo.com/search;_ylt=A7x9QbwbZXxQ9EMAPCKT.Qt.?p=BMW+Z4&fr=yfp",
                "search",
                "Yahoo!",
                Some("BMW Z4"),
            ),
            (
                "https://uk.search.yahoo.com/search?p=weather",
                "search",
                "Yahoo!",
                Some("weather"),
            ),
            (
                "http://it.images.search.yahoo.com/images/view?p=Earth+Magic+Oracle",
                "search",
                "Yahoo! Images",
                Some("Earth Magic Oracle"),
            ),
            (
                "https://search.yahoo.co.jp/search?p=%A5%C6%A5%B9%A5%C8&ei=EUC-JP",
                "search",
                "Yahoo! JAPAN",
                Some("テスト"),
            ),
            (
                "https://search.yahoo.co.jp/search?p=%E3%83%86%E3%82%B9%E3%83%88&ei=UTF-8",
                "search",
                "Yahoo! JAPAN",
                Some("テスト"),
            ),
            // Baidu: GB2312 without a declaration is Baidu's old default
            (
                "http://www.baidu.com/s?wd=%B0%D9%B6%C8",
                "search",
                "Baidu",
                Some("百度"),
            ),
            (
                "https://www.baidu.com/s?ie=utf-8&wd=%E7%99%BE%E5%BA%A6",
                "search",
                "Baidu",
                Some("百度"),
            ),
            (
                "https://www.baidu.com/s?ie=gb2312&wd=%B0%D9%B6%C8",
                "search",
                "Baidu",
                Some("百度"),
            ),
            (
                "http://image.baidu.com/i?tn=baiduimage&word=%E7%8C%AB",
                "search",
                "Baidu Images",
                Some("猫"),
            ),
            // Yandex on every TLD, ya.ru, Yandex Images
            (
                "https://yandex.ru/search/?text=%D0%BF%D1%80%D0%B8%D0%B2%D0%B5%D1%82&lr=213",
                "search",
                "Yandex",
                Some("привет"),
            ),
            (
                "https://yandex.kz/search/?text=salem",
                "search",
                "Yandex",
                Some("salem"),
            ),
            (
                "https://yandex.by/search/?text=x",
                "search",
                "Yandex",
                Some("x"),
            ),
            (
                "https://yandex.com.tr/search/?text=merhaba",
                "search",
                "Yandex",
                Some("merhaba"),
            ),
            (
                "https://ya.ru/search/?text=y",
                "search",
                "Yandex",
                Some("y"),
            ),
            (
                "http://images.yandex.ru/yandsearch?text=Blue%20Velvet&noreask=1",
                "search",
                "Yandex Images",
                Some("Blue Velvet"),
            ),
            // Korea: Naver (EUC-KR is its old default), Daum
            (
                "https://search.naver.com/search.naver?where=nexearch&query=%EC%95%88%EB%85%95",
                "search",
                "Naver",
                Some("안녕"),
            ),
            (
                "https://search.naver.com/search.naver?query=%BE%C8%B3%E7",
                "search",
                "Naver",
                Some("안녕"),
            ),
            (
                "https://search.daum.net/search?w=tot&q=%EC%B9%B4%EC%B9%B4%EC%98%A4",
                "search",
                "Daum",
                Some("카카오"),
            ),
            // Europe
            (
                "https://search.seznam.cz/?q=%C4%8Desk%C3%BD",
                "search",
                "Seznam",
                Some("český"),
            ),
            (
                "https://duckduckgo.com/?q=privacy+browser&ia=web",
                "search",
                "DuckDuckGo",
                Some("privacy browser"),
            ),
            (
                "https://www.ecosia.org/search?method=index&q=trees",
                "search",
                "Ecosia",
                Some("trees"),
            ),
            (
                "https://www.qwant.com/?q=libre&t=web",
                "search",
                "Qwant",
                Some("libre"),
            ),
            (
                "https://www.startpage.com/do/search?query=private",
                "search",
                "Startpage",
                Some("private"),
            ),
            (
                "https://s3-us3.ixquick.com/do/search",
                "search",
                "Ixquick",
                None,
            ),
            (
                "https://search.brave.com/search?q=brave+new",
                "search",
                "Brave",
                Some("brave new"),
            ),
            (
                "http://go.mail.ru/search?q=Gothenburg&where=any",
                "search",
                "Mail.ru",
                Some("Gothenburg"),
            ),
            (
                "https://suche.web.de/web?su=wetter",
                "search",
                "WEB.DE",
                Some("wetter"),
            ),
            // portals and toolbars
            (
                "http://aolsearch.aol.co.uk/aol/search?s_chn=hp&enabled_terms=&q=pennyroyal",
                "search",
                "AOL",
                Some("pennyroyal"),
            ),
            (
                "https://search.aol.com/aol/search?q=news",
                "search",
                "AOL",
                Some("news"),
            ),
            (
                "http://uk.search-results.com/web?qsrc=1&o=1921&q=pinnacle+sports",
                "search",
                "Ask",
                Some("pinnacle sports"),
            ),
            (
                "https://www.ask.com/web?q=how+to",
                "search",
                "Ask",
                Some("how to"),
            ),
            (
                "http://isearch.avg.com/search?cid=%7B0%7D&mid=x&q=test+query",
                "search",
                "AVG",
                Some("test query"),
            ),
            // China
            (
                "https://www.sogou.com/web?query=%E6%90%9C%E7%8B%97",
                "search",
                "Sogou",
                Some("搜狗"),
            ),
            (
                "https://www.sogou.com/web?query=%CB%D1%B9%B7",
                "search",
                "Sogou",
                Some("搜狗"),
            ),
            (
                "https://www.so.com/s?q=360",
                "search",
                "360 Search",
                Some("360"),
            ),
            // Japan: goo (EUC-JP), BIGLOBE (Shift_JIS), @nifty, Rakuten, docomo
            (
                "http://search.goo.ne.jp/web.jsp?MT=%A5%C6%A5%B9%A5%C8&IE=EUC-JP",
                "search",
                "goo",
                Some("テスト"),
            ),
            (
                "http://search.goo.ne.jp/web.jsp?MT=%A5%C6%A5%B9%A5%C8",
                "search",
                "goo",
                Some("テスト"),
            ),
            (
                "https://search.biglobe.ne.jp/cgi-bin/search2-b?q=%83e%83X%83g",
                "search",
                "BIGLOBE",
                Some("テスト"),
            ),
            (
                "https://search.nifty.com/websearch/search?q=%E5%A4%A9%E6%B0%97",
                "search",
                "@nifty",
                Some("天気"),
            ),
            (
                "https://websearch.rakuten.co.jp/Web?qt=%E6%A5%BD%E5%A4%A9",
                "search",
                "Rakuten",
                Some("楽天"),
            ),
            (
                "https://search.smt.docomo.ne.jp/result?MT=abc",
                "search",
                "docomo",
                Some("abc"),
            ),
            // video and shopping search
            (
                "https://www.youtube.com/results?search_query=rust+tutorial",
                "search",
                "YouTube",
                Some("rust tutorial"),
            ),
            (
                "http://www.pricerunner.co.uk/search?displayNoHitsMessage=1&q=very+cool+products",
                "search",
                "PriceRunner",
                Some("very cool products"),
            ),
            (
                "https://www.idealo.de/preisvergleich/MainSearchProductCategory.html?q=laptop",
                "search",
                "idealo",
                Some("laptop"),
            ),
            (
                "https://shopping.yahoo.co.jp/search?p=%E9%9E%84",
                "search",
                "Yahoo! JAPAN Shopping",
                Some("鞄"),
            ),
            // a blank term is no term
            (
                "https://www.google.com/search?q=+",
                "search",
                "Google",
                None,
            ),
        ],
    );
}

#[test]
fn social_networks_short_links_apps_and_messengers() {
    let f = build(CONFIG);
    check(
        f.as_ref(),
        &[
            ("https://t.co/AbCdEf", "social", "X", None),
            ("https://x.com/someone/status/1", "social", "X", None),
            ("https://lnkd.in/abc", "social", "LinkedIn", None),
            (
                "https://m.facebook.com/story.php?id=1",
                "social",
                "Facebook",
                None,
            ),
            (
                "https://l.facebook.com/l.php?u=https%3A%2F%2Fshop.example%2F",
                "social",
                "Facebook",
                None,
            ),
            ("https://fb.me/x", "social", "Facebook", None),
            (
                "https://l.instagram.com/?u=https%3A%2F%2Fshop.example%2F",
                "social",
                "Instagram",
                None,
            ),
            (
                "https://www.threads.net/@someone",
                "social",
                "Threads",
                None,
            ),
            ("https://youtu.be/x", "social", "YouTube", None),
            (
                "https://www.youtube.com/watch?v=x",
                "social",
                "YouTube",
                None,
            ),
            ("https://redd.it/x", "social", "Reddit", None),
            ("https://pin.it/x", "social", "Pinterest", None),
            ("https://vm.tiktok.com/ZM1/", "social", "TikTok", None),
            ("https://bsky.app/profile/x", "social", "Bluesky", None),
            ("https://mastodon.social/@x", "social", "Mastodon", None),
            ("https://vk.com/wall1", "social", "VK", None),
            ("https://ok.ru/group/1", "social", "Odnoklassniki", None),
            ("https://weibo.com/1", "social", "Weibo", None),
            // messaging apps that send referrers
            ("https://web.whatsapp.com/", "social", "WhatsApp", None),
            ("https://wa.me/123", "social", "WhatsApp", None),
            ("https://t.me/channel/1", "social", "Telegram", None),
            ("https://web.telegram.org/k/", "social", "Telegram", None),
            (
                "android-app://org.telegram.messenger/",
                "social",
                "Telegram",
                None,
            ),
            ("https://www.messenger.com/t/1", "social", "Messenger", None),
            (
                "https://discord.com/channels/1/2",
                "social",
                "Discord",
                None,
            ),
            (
                "https://app.slack.com/client/T1/C1",
                "social",
                "Slack",
                None,
            ),
            ("android-app://com.kakao.talk/", "social", "KakaoTalk", None),
            // Japan and Korea
            ("https://line.me/R/msg/text/", "social", "LINE", None),
            ("https://lin.ee/abc", "social", "LINE", None),
            ("https://liff.line.me/1-abc", "social", "LINE", None),
            (
                "https://b.hatena.ne.jp/entry/s/shop.example/",
                "social",
                "Hatena Bookmark",
                None,
            ),
            (
                "https://someone.hatenablog.com/entry/1",
                "social",
                "Hatena Blog",
                None,
            ),
            ("https://mixi.jp/view_diary.pl?id=1", "social", "mixi", None),
            (
                "https://ameblo.jp/someone/entry-1.html",
                "social",
                "Ameba",
                None,
            ),
            ("https://s.ameblo.jp/someone/", "social", "Ameba", None),
            (
                "https://www.nicovideo.jp/watch/sm9",
                "social",
                "niconico",
                None,
            ),
            (
                "https://m.blog.naver.com/someone/1",
                "social",
                "Naver Blog",
                None,
            ),
            ("https://cafe.naver.com/x", "social", "Naver Cafe", None),
            ("https://story.kakao.com/x", "social", "KakaoStory", None),
        ],
    );
}

#[test]
fn webmail() {
    let f = build(CONFIG);
    check(
        f.as_ref(),
        &[
            ("https://mail.google.com/mail/u/0/", "email", "Gmail", None),
            (
                "android-app://com.google.android.gm/",
                "email",
                "Gmail",
                None,
            ),
            (
                "https://outlook.live.com/mail/0/inbox",
                "email",
                "Outlook",
                None,
            ),
            (
                "https://outlook.office365.com/owa/",
                "email",
                "Outlook",
                None,
            ),
            ("https://outlook.office.com/mail/", "email", "Outlook", None),
            (
                "https://bay02.mail.live.com/default.aspx",
                "email",
                "Outlook",
                None,
            ),
            (
                "https://us-mg6.mail.yahoo.com/neo/launch",
                "email",
                "Yahoo! Mail",
                None,
            ),
            (
                "https://mail.yahoo.co.jp/",
                "email",
                "Yahoo! JAPAN Mail",
                None,
            ),
            (
                "https://mail.aol.com/webmail-std/en-us/suite",
                "email",
                "AOL Mail",
                None,
            ),
            ("https://www.icloud.com/mail/", "email", "iCloud Mail", None),
            ("https://navigator.gmx.net/mail", "email", "GMX", None),
            (
                "https://3c.web.de/mail/client/start",
                "email",
                "WEB.DE",
                None,
            ),
            ("https://e.mail.ru/inbox/", "email", "Mail.ru", None),
            (
                "https://mail.yandex.ru/?uid=1",
                "email",
                "Yandex Mail",
                None,
            ),
            ("https://mail.yandex.com.tr/", "email", "Yandex Mail", None),
            ("https://mail.naver.com/", "email", "Naver Mail", None),
            (
                "https://mail.proton.me/u/0/inbox",
                "email",
                "Proton Mail",
                None,
            ),
            (
                "https://mail.qq.com/cgi-bin/frame_html",
                "email",
                "QQ Mail",
                None,
            ),
            ("https://mail.rakuten.co.jp/", "email", "Rakuten Mail", None),
            (
                "https://mail.smt.docomo.ne.jp/",
                "email",
                "docomo Mail",
                None,
            ),
            ("https://mail.auone.jp/", "email", "au Mail", None),
            ("https://email.seznam.cz/", "email", "Seznam Email", None),
        ],
    );
}

#[test]
fn chatbots_by_host_and_by_utm_source() {
    let f = build(CONFIG);
    check(
        f.as_ref(),
        &[
            ("https://chatgpt.com/", "chatbot", "ChatGPT", None),
            ("https://chat.openai.com/c/1", "chatbot", "ChatGPT", None),
            (
                "https://www.perplexity.ai/search/x",
                "chatbot",
                "Perplexity",
                None,
            ),
            // Google's hosts, not Google search
            ("https://gemini.google.com/app", "chatbot", "Gemini", None),
            ("https://bard.google.com/", "chatbot", "Gemini", None),
            (
                "https://copilot.microsoft.com/",
                "chatbot",
                "Microsoft Copilot",
                None,
            ),
            // a path of Bing's host, and Edge's sidebar
            (
                "https://www.bing.com/chat?q=x",
                "chatbot",
                "Microsoft Copilot",
                None,
            ),
            (
                "https://edgeservices.bing.com/edgesvc/chat",
                "chatbot",
                "Microsoft Copilot",
                None,
            ),
            ("https://claude.ai/chat/1", "chatbot", "Claude", None),
            ("https://you.com/search?q=x", "chatbot", "You.com", None),
            ("https://www.phind.com/search?q=x", "chatbot", "Phind", None),
            ("https://poe.com/chat/1", "chatbot", "Poe", None),
            ("https://chat.deepseek.com/", "chatbot", "DeepSeek", None),
            (
                "https://chat.mistral.ai/chat",
                "chatbot",
                "Mistral Le Chat",
                None,
            ),
            // tagged links: the referrer's own query
            (
                "https://blog.example.org/?utm_source=chatgpt.com",
                "chatbot",
                "ChatGPT",
                None,
            ),
        ],
    );
    // the page URL's tag, with no referrer (apps strip it) or another one
    for (referrer, page, source) in [
        (
            None,
            "https://shop.example/p?utm_source=chatgpt.com",
            "ChatGPT",
        ),
        (None, "/p?utm_source=perplexity", "Perplexity"),
        (
            Some("https://blog.example.org/"),
            "/p?utm_source=copilot.microsoft.com",
            "Microsoft Copilot",
        ),
        (Some("-"), "/p?utm_source=Claude", "Claude"),
    ] {
        let mut rec = vec![("url", Value::from(page))];
        if let Some(r) = referrer {
            rec.push(("referrer", r.into()));
        }
        let out = run(f.as_ref(), map(&rec));
        assert_eq!(
            s(&out, "medium").as_deref(),
            Some("chatbot"),
            "{page}: {out}"
        );
        assert_eq!(s(&out, "source").as_deref(), Some(source), "{page}: {out}");
        assert!(s(&out, "utm_source").is_some(), "{out}");
    }
    // not every utm_source is a chatbot
    let out = run(
        f.as_ref(),
        map(&[("url", "/p?utm_source=newsletter".into())]),
    );
    assert_eq!(s(&out, "medium").as_deref(), Some("direct"), "{out}");
    assert_eq!(
        s(&out, "utm_source").as_deref(),
        Some("newsletter"),
        "{out}"
    );
}

fn visit(f: &dyn Filter, referrer: Option<&str>, page: &str) -> Value {
    let mut rec = vec![("url", Value::from(page)), ("other", 1.into())];
    if let Some(r) = referrer {
        rec.push(("referrer", r.into()));
    }
    run(f, map(&rec))
}

#[test]
fn paid_clicks_by_click_id_and_utm_medium() {
    let f = build(CONFIG);
    let google = Some("https://www.google.com/");
    let cases: &[(Option<&str>, &str, &str, Option<&str>)] = &[
        (
            google,
            "https://shop.example/landing?gclid=Cj0KCQ",
            "paid",
            Some("Google Ads"),
        ),
        (google, "/landing?gbraid=0AAAA", "paid", Some("Google Ads")),
        (google, "/landing?wbraid=Cj8K", "paid", Some("Google Ads")),
        (
            Some("https://www.bing.com/"),
            "/l?msclkid=abc",
            "paid",
            Some("Microsoft Advertising"),
        ),
        (
            Some("https://yandex.ru/"),
            "/l?yclid=123",
            "paid",
            Some("Yandex Direct"),
        ),
        (
            Some("https://search.yahoo.co.jp/"),
            "/l?yclid=YSS.1000.abc",
            "paid",
            Some("Yahoo! JAPAN Ads"),
        ),
        (
            None,
            "/l?yclid=YJAD.1600.xyz",
            "paid",
            Some("Yahoo! JAPAN Ads"),
        ),
        (
            Some("https://www.tiktok.com/"),
            "/l?ttclid=E.C.P",
            "paid",
            Some("TikTok Ads"),
        ),
        (
            Some("https://t.co/x"),
            "/l?twclid=2-abc",
            "paid",
            Some("X Ads"),
        ),
        (
            Some("https://www.linkedin.com/"),
            "/l?li_fat_id=1-2",
            "paid",
            Some("LinkedIn Ads"),
        ),
        // fbclid is on every link out of Facebook: paid only with a paid utm_medium
        (
            Some("https://m.facebook.com/"),
            "/l?fbclid=IwAR",
            "social",
            Some("Facebook"),
        ),
        (
            Some("https://m.facebook.com/"),
            "/l?fbclid=IwAR&utm_medium=cpc",
            "paid",
            Some("Meta Ads"),
        ),
        (
            Some("https://l.instagram.com/"),
            "/l?fbclid=IwAR&utm_medium=paid_social&utm_source=ig",
            "paid",
            Some("Meta Ads"),
        ),
        // utm_medium alone: the source is utm_source, else the referrer's
        (
            Some("https://partner.example/"),
            "/l?utm_medium=ppc&utm_source=partner",
            "paid",
            Some("partner"),
        ),
        (google, "/l?utm_medium=CPC", "paid", Some("Google")),
        (
            google,
            "/l?utm_medium=paidsearch&utm_source=google",
            "paid",
            Some("google"),
        ),
        (
            Some("https://x.example/"),
            "/l?utm_medium=display",
            "unknown",
            None,
        ),
        // no referrer at all (apps, https → http): still paid
        (None, "/l?gclid=abc", "paid", Some("Google Ads")),
        (
            Some("-"),
            "/l?msclkid=abc",
            "paid",
            Some("Microsoft Advertising"),
        ),
        // your own hosts stay internal
        (
            Some("https://www.shop.example/cart"),
            "/l?gclid=abc",
            "internal",
            None,
        ),
        // a page URL without signals changes nothing
        (google, "/l?id=3", "search", Some("Google")),
        (google, "not a url", "search", Some("Google")),
    ];
    for (r, page, medium, source) in cases {
        let out = visit(f.as_ref(), *r, page);
        assert_eq!(
            s(&out, "medium").as_deref(),
            Some(*medium),
            "{r:?} {page}: {out}"
        );
        assert_eq!(s(&out, "source").as_deref(), *source, "{r:?} {page}: {out}");
    }
    // the click id and the tags are in the output, under their own names
    let out = visit(
        f.as_ref(),
        google,
        "/l?gclid=Cj0&utm_source=google&utm_medium=cpc&utm_campaign=spring&x=1",
    );
    assert_eq!(s(&out, "gclid").as_deref(), Some("Cj0"));
    assert_eq!(s(&out, "utm_source").as_deref(), Some("google"));
    assert_eq!(s(&out, "utm_medium").as_deref(), Some("cpc"));
    assert_eq!(s(&out, "utm_campaign").as_deref(), Some("spring"));
    assert_eq!(s(&out, "x"), None);
    assert_eq!(s(&out, "host").as_deref(), Some("www.google.com"));
    // direct with a click id: medium, source and the id only
    let out = visit(f.as_ref(), None, "/l?gclid=abc");
    assert_eq!(
        out,
        map(&[
            ("medium", "paid".into()),
            ("source", "Google Ads".into()),
            ("gclid", "abc".into()),
        ])
    );
    // a malformed referrer keeps its raw value
    let out = visit(f.as_ref(), Some("not a url"), "/l?gclid=abc");
    assert_eq!(s(&out, "medium").as_deref(), Some("paid"));
    assert_eq!(s(&out, "raw").as_deref(), Some("not a url"));
    // ad click hosts, and click ids in the referrer's own query (no url_key)
    let plain = build("");
    check(
        plain.as_ref(),
        &[
            (
                "https://www.googleadservices.com/pagead/aclk?sa=L&ai=x",
                "paid",
                "Google Ads",
                None,
            ),
            (
                "https://ad.doubleclick.net/ddm/clk/1",
                "paid",
                "Google Ads",
                None,
            ),
            (
                "https://www.google.com/aclk?sa=l&q=shoes",
                "paid",
                "Google Ads",
                None,
            ),
            (
                "https://www.bing.com/aclick?ld=e8&u=x",
                "paid",
                "Microsoft Advertising",
                None,
            ),
            (
                "https://partner.example/?utm_medium=cpc&utm_source=partner",
                "paid",
                "partner",
                None,
            ),
            (
                "https://landing.example/?gclid=abc",
                "paid",
                "Google Ads",
                None,
            ),
        ],
    );
}

#[test]
fn cached_referrers_do_not_keep_a_pages_signals() {
    // the default cache is on: the same referrer with and without a click id
    let f = build(CONFIG);
    let r = Some("https://www.google.com/search?q=shoes");
    for _ in 0..3 {
        let out = visit(f.as_ref(), r, "/l?gclid=abc");
        assert_eq!(s(&out, "medium").as_deref(), Some("paid"));
        assert_eq!(s(&out, "term").as_deref(), Some("shoes"));
        let out = visit(f.as_ref(), r, "/l");
        assert_eq!(s(&out, "medium").as_deref(), Some("search"));
        assert_eq!(s(&out, "gclid"), None);
    }
}

#[test]
fn internal_direct_and_malformed() {
    let f = build(CONFIG);
    check(
        f.as_ref(),
        &[
            ("https://shop.example/cart", "internal", "", None),
            ("https://www.shop.example/", "internal", "", None),
            ("https://evilshop.example/", "unknown", "", None),
            ("", "direct", "", None),
            ("-", "direct", "", None),
            ("not a url", "unknown", "", None),
            ("http://exa mple.com/", "unknown", "", None),
            (
                "https://docs.google.com/document/d/1",
                "unknown",
                "Google Docs",
                None,
            ),
        ],
    );
    let out = run(f.as_ref(), map(&[("x", 1.into())]));
    assert_eq!(out, map(&[("medium", "direct".into())]));
    let out = referrer(f.as_ref(), "not a url");
    assert_eq!(
        out,
        map(&[("medium", "unknown".into()), ("raw", "not a url".into())])
    );
    // a page URL that is not text, or huge, is ignored
    for page in [
        Value::from(3),
        Value::from(format!("/l?gclid={}", "x".repeat(20_000))),
    ] {
        let out = run(
            f.as_ref(),
            map(&[("referrer", "https://t.co/x".into()), ("url", page)]),
        );
        assert_eq!(s(&out, "medium").as_deref(), Some("social"), "{out}");
    }
}

// ---- the database ----

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

const SNOWPLOW_YML: &str = "\
# referers.yml, Snowplow referer-parser format
search:
  FindIt:
    parameters:
      - s
      - query
    domains:
      - findit.example
      - search.findit.co.jp
  Google:
    parameters:
      - q
    domains:
      - google.com
      - www.google.co.jp

social:
  Chirp:
    domains:
      - chirp.example
      - t.co
email:
  Letters:
    domains:
      - letters.example
unknown:
  Partner Portal:
    domains:
      - portal.example/partners
  Maps:
    parameters: [text]
    domains: [maps.example]
";

fn toml_str(s: &str) -> String {
    format!("{s:?}")
}

#[test]
fn database_extends_the_builtin_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "referers.yml", SNOWPLOW_YML);
    let f = build(&format!("database = {}", toml_str(&path)));
    check(
        f.as_ref(),
        &[
            (
                "https://findit.example/?s=abc",
                "search",
                "FindIt",
                Some("abc"),
            ),
            (
                "https://www.findit.example/?query=def",
                "search",
                "FindIt",
                Some("def"),
            ),
            (
                "https://search.findit.co.jp/?s=x",
                "search",
                "FindIt",
                Some("x"),
            ),
            // the file's entry replaces the built-in one with the same key
            ("https://t.co/x", "social", "Chirp", None),
            ("https://letters.example/inbox", "email", "Letters", None),
            (
                "https://portal.example/partners/1",
                "unknown",
                "Partner Portal",
                None,
            ),
            ("https://portal.example/other", "unknown", "", None),
            // parameters on another medium than search give a term too
            (
                "https://maps.example/?text=cafe",
                "unknown",
                "Maps",
                Some("cafe"),
            ),
            // built-ins are still there
            (
                "https://www.bing.com/search?q=x",
                "search",
                "Bing",
                Some("x"),
            ),
            (
                "https://www.google.de/search?q=y",
                "search",
                "Google",
                Some("y"),
            ),
            ("https://mail.google.com/", "email", "Gmail", None),
        ],
    );
}

#[test]
fn database_is_read_again_when_the_filter_is_built_again() {
    // a reload rebuilds the filters: the file's current content counts
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "referers.yml",
        "social:\n  One:\n    domains: [one.example]\n",
    );
    let src = format!("database = {}", toml_str(&path));
    let first = build(&src);
    write(
        &dir,
        "referers.yml",
        "social:\n  Two:\n    domains: [one.example]\n",
    );
    let second = build(&src);
    check(
        first.as_ref(),
        &[("https://one.example/", "social", "One", None)],
    );
    check(
        second.as_ref(),
        &[("https://one.example/", "social", "Two", None)],
    );
    // and a file broken since then fails the new build, naming the line
    write(
        &dir,
        "referers.yml",
        "social:\n  Two:\n    domains: [one example]\n",
    );
    let e = build_error(&src);
    assert!(
        e.message.starts_with(&format!("{path}:3:")),
        "{}",
        e.message
    );
}

#[test]
fn database_replaces_the_builtin_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "referers.yml", SNOWPLOW_YML);
    let f = build(&format!(
        "database = {}\ndatabase_mode = \"replace\"\n[social]\n\"example.social\" = \"Ex\"",
        toml_str(&path)
    ));
    check(
        f.as_ref(),
        &[
            (
                "https://findit.example/?s=abc",
                "search",
                "FindIt",
                Some("abc"),
            ),
            (
                "https://www.google.com/search?q=x",
                "search",
                "Google",
                Some("x"),
            ),
            // not in the file: gone
            ("https://www.google.de/search?q=y", "unknown", "", None),
            ("https://www.bing.com/search?q=x", "unknown", "", None),
            // the file's google.com covers its subdomains, Gmail's host too
            ("https://mail.google.com/", "search", "Google", None),
            ("https://chatgpt.com/", "unknown", "", None),
            // the config's own entries are still added
            ("https://example.social/", "social", "Ex", None),
        ],
    );
    // the output has the same fields whatever the table
    let builtin = build("");
    let keys = |v: &Value| -> Vec<String> {
        v.as_map()
            .unwrap()
            .iter()
            .map(|(k, _)| k.as_str().unwrap().to_string())
            .collect()
    };
    let r = "https://www.google.com/search?q=x&utm_source=a&gclid=1";
    assert_eq!(
        keys(&referrer(f.as_ref(), r)),
        keys(&referrer(builtin.as_ref(), r))
    );
    assert_eq!(
        keys(&referrer(f.as_ref(), r)),
        [
            "scheme",
            "host",
            "path",
            "query",
            "medium",
            "source",
            "term",
            "utm_source",
            "gclid"
        ]
    );
}

#[test]
fn database_in_json_form() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "referers.json",
        r#"{
  "search": {
    "FindIt": { "parameters": ["s"], "domains": ["findit.example"], "encoding": "shift_jis" }
  },
  "chatbot": {
    "Helper": { "domains": ["helper.example"] }
  },
  "paid": {
    "AdNet": { "domains": ["click.adnet.example"] }
  }
}"#,
    );
    let f = build(&format!("database = {}", toml_str(&path)));
    check(
        f.as_ref(),
        &[
            (
                "https://findit.example/?s=%83e%83X%83g",
                "search",
                "FindIt",
                Some("テスト"),
            ),
            ("https://helper.example/c/1", "chatbot", "Helper", None),
            (
                "https://blog.example/?utm_source=helper.example",
                "chatbot",
                "Helper",
                None,
            ),
            ("https://click.adnet.example/c?id=1", "paid", "AdNet", None),
        ],
    );
}

fn build_error(src: &str) -> ConfigError {
    let mut e = try_build(src).err().expect("should fail");
    assert_eq!(e.len(), 1, "{e:?}");
    e.remove(0)
}

#[test]
fn database_errors_name_the_file_the_line_and_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str, &str)] = &[
        (
            "bad-host.yml",
            "search:\n  FindIt:\n    parameters: [q]\n    domains:\n      - findit.example\n      - 'find it.example'\n",
            ":6: entry `search.FindIt`:",
        ),
        ("no-domains.yml", "social:\n  Chirp:\n    domain: [x.example]\n", ":3: entry `social.Chirp`: unknown field `domain`"),
        ("medium.yml", "search:\n  A:\n    domains: [a.example]\nsocialz:\n  B:\n    domains: [b.example]\n", ":4: `socialz` is not a medium"),
        ("syntax.yml", "search:\n  A:\n    domains: [a.example\n", ":3: a `[` list must close"),
        ("bad.json", "{\"search\": {\"A\": {\"domains\": [\"a.example\"],}}}", ":1: not valid JSON"),
    ];
    for (name, text, want) in cases {
        let path = write(&dir, name, text);
        let e = build_error(&format!("database = {}", toml_str(&path)));
        assert_eq!(e.key, "filter[0].database", "{name}");
        assert!(
            e.message.starts_with(&format!("{path}{want}")),
            "{name}: {}",
            e.message
        );
    }
    // a missing file
    let missing = dir.path().join("nope.yml").display().to_string();
    let e = build_error(&format!("database = {}", toml_str(&missing)));
    assert_eq!(e.key, "filter[0].database");
    assert!(e.message.starts_with(&missing), "{}", e.message);
    // a file over the size limit is refused before it is read
    let big = dir.path().join("big.yml");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(database::MAX_FILE_SIZE + 1)
        .unwrap();
    let big = big.display().to_string();
    let e = build_error(&format!("database = {}", toml_str(&big)));
    assert!(
        e.message.starts_with(&big) && e.message.contains("more than"),
        "{}",
        e.message
    );
    // replace with no database; an unknown mode
    let e = build_error("database_mode = \"replace\"");
    assert_eq!(e.key, "filter[0].database_mode");
    let e = build_error("database_mode = \"merge\"");
    assert!(e.key.starts_with("filter[0].database_mode"), "{e:?}");
    // a bad charset in the config's own entries
    let e = build_error(
        "[search]\n\"a.example\" = { source = \"A\", param = \"q\", encoding = \"klingon\" }",
    );
    assert_eq!(e.key, "filter[0].search.\"a.example\".encoding");
}

#[test]
fn a_large_table_is_looked_up_by_suffix() {
    // 200,000 entries from a file: lookups still find the most specific key
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("social:\n");
    for i in 0..20_000 {
        text.push_str(&format!("  Net{i}:\n    domains:\n"));
        for j in 0..10 {
            text.push_str(&format!("      - h{j}.net{i}.example\n"));
        }
    }
    let path = write(&dir, "big.yml", &text);
    let f = build(&format!("database = {}\ncache_size = 0", toml_str(&path)));
    check(
        f.as_ref(),
        &[
            ("https://a.h3.net19999.example/", "social", "Net19999", None),
            ("https://h0.net0.example/", "social", "Net0", None),
            ("https://net0.example/", "unknown", "", None),
            (
                "https://www.google.com/search?q=x",
                "search",
                "Google",
                Some("x"),
            ),
        ],
    );
    // cost per lookup: the same order with 200,000 entries as with the
    // built-in table (a linear scan would be ~1000× slower)
    let small = build("cache_size = 0");
    let time = |f: &dyn Filter| {
        let start = std::time::Instant::now();
        for i in 0..2000 {
            let _ = referrer(f, &format!("https://a.b.c{i}.unknown-host.example/x"));
        }
        start.elapsed()
    };
    let (mut big_t, mut small_t) = (std::time::Duration::MAX, std::time::Duration::MAX);
    for _ in 0..3 {
        big_t = big_t.min(time(f.as_ref()));
        small_t = small_t.min(time(small.as_ref()));
    }
    assert!(
        big_t < small_t * 20,
        "200k entries: {big_t:?}, built-in: {small_t:?}"
    );
}
