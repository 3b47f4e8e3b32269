//! The built-in table: this project's own compilation of public facts (the
//! host names sites use and the query parameters their search pages put the
//! terms in). Keys follow the rules of [`crate::table`]: a key matches the
//! host and its subdomains, `name.*` any top-level domain, `host/path` that
//! path. Android apps appear as their package names (`android-app://` referrers).
//!
//! Over 600 lines for a reason: it is a data table (one entry a line),
//! no logic.

use crate::table::{Entry, Medium};

/// One source (a search engine, a network, a webmail) and its hosts.
#[derive(Debug)]
pub struct Source {
    pub medium: Medium,
    pub name: &'static str,
    /// search: parameters holding the term, the first present and non-empty wins
    pub params: &'static [&'static str],
    /// search: the charset of the query when the URL declares none and the
    /// bytes are not UTF-8 (a WHATWG label: `gbk`, `euc-jp`, `shift_jis`, `euc-kr`)
    pub encoding: Option<&'static str>,
    pub hosts: &'static [&'static str],
}

impl Source {
    pub fn entry(&self) -> Entry {
        Entry {
            medium: self.medium,
            source: self.name.to_string(),
            params: self.params.iter().map(|p| p.to_string()).collect(),
            encoding: self
                .encoding
                .and_then(|l| encoding_rs::Encoding::for_label(l.as_bytes())),
        }
    }
}

const fn search(
    name: &'static str,
    params: &'static [&'static str],
    hosts: &'static [&'static str],
) -> Source {
    Source {
        medium: Medium::Search,
        name,
        params,
        encoding: None,
        hosts,
    }
}

const fn search_enc(
    name: &'static str,
    params: &'static [&'static str],
    encoding: &'static str,
    hosts: &'static [&'static str],
) -> Source {
    Source {
        medium: Medium::Search,
        name,
        params,
        encoding: Some(encoding),
        hosts,
    }
}

const fn other(medium: Medium, name: &'static str, hosts: &'static [&'static str]) -> Source {
    Source {
        medium,
        name,
        params: &[],
        encoding: None,
        hosts,
    }
}

const fn social(name: &'static str, hosts: &'static [&'static str]) -> Source {
    other(Medium::Social, name, hosts)
}

const fn email(name: &'static str, hosts: &'static [&'static str]) -> Source {
    other(Medium::Email, name, hosts)
}

const fn chatbot(name: &'static str, hosts: &'static [&'static str]) -> Source {
    other(Medium::Chatbot, name, hosts)
}

const fn paid(name: &'static str, hosts: &'static [&'static str]) -> Source {
    other(Medium::Paid, name, hosts)
}

const fn site(name: &'static str, hosts: &'static [&'static str]) -> Source {
    other(Medium::Unknown, name, hosts)
}

pub const BUILTIN: &[Source] = &[
    // ---- search: global engines ----
    search(
        "Google",
        &["q", "as_q"],
        &[
            "google.*",
            "googlesearch.*",
            "com.google.android.googlequicksearchbox",
        ],
    ),
    search("Google Images", &["q", "as_q"], &["images.google.*"]),
    search("Google Video", &["q"], &["video.google.*"]),
    search("Google Books", &["q"], &["books.google.*"]),
    search("Google Scholar", &["q", "as_q"], &["scholar.google.*"]),
    search(
        "Google Shopping",
        &["q"],
        &[
            "shopping.google.*",
            "google.*/products",
            "google.*/shopping",
        ],
    ),
    search(
        "Bing",
        &["q"],
        &[
            "bing.com",
            "bing.*",
            "search.msn.com",
            "search.live.com",
            "msn.com/search",
        ],
    ),
    search("Bing Images", &["q"], &["bing.com/images"]),
    search("Bing Videos", &["q"], &["bing.com/videos"]),
    search(
        "Yahoo!",
        &["p", "q", "va"],
        &[
            "search.yahoo.com",
            "search.yahoo.net",
            "yahoo.com/search",
            "search.yahoo.*",
            "yhs.search.yahoo.com",
        ],
    ),
    search("Yahoo! Images", &["p", "q"], &["images.search.yahoo.com"]),
    search("Yahoo! Video", &["p", "q"], &["video.search.yahoo.com"]),
    search_enc(
        "Yahoo! JAPAN",
        &["p", "q", "MT"],
        "euc-jp",
        &[
            "search.yahoo.co.jp",
            "image.search.yahoo.co.jp",
            "video.search.yahoo.co.jp",
        ],
    ),
    search("Yahoo! JAPAN Shopping", &["p"], &["shopping.yahoo.co.jp"]),
    search("Yahoo! JAPAN Auctions", &["p"], &["auctions.yahoo.co.jp"]),
    search(
        "DuckDuckGo",
        &["q"],
        &[
            "duckduckgo.com",
            "duckduckgo.onion",
            "ddg.gg",
            "start.duckduckgo.com",
            "com.duckduckgo.mobile.android",
        ],
    ),
    search("Ecosia", &["q"], &["ecosia.org", "ecosia.com"]),
    search("Qwant", &["q"], &["qwant.com", "qwantjunior.com"]),
    search(
        "Startpage",
        &["query", "q"],
        &[
            "startpage.com",
            "startpage.nl",
            "startpage.de",
            "eu.startpage.com",
        ],
    ),
    search(
        "Ixquick",
        &["query", "q"],
        &[
            "ixquick.com",
            "ixquick.de",
            "ixquick.nl",
            "ixquick.fr",
            "ixquick.eu",
            "ixquick.co.uk",
        ],
    ),
    search("Brave", &["q"], &["search.brave.com"]),
    search("Mojeek", &["q"], &["mojeek.com", "mojeek.co.uk"]),
    search("Kagi", &["q"], &["kagi.com"]),
    search("Swisscows", &["query"], &["swisscows.com", "swisscows.ch"]),
    search("Presearch", &["q"], &["presearch.com", "presearch.org"]),
    search("MetaGer", &["eingabe", "q"], &["metager.de", "metager.org"]),
    search("Yep", &["q"], &["yep.com"]),
    search("Searx", &["q"], &["searx.me", "searx.be", "searx.org"]),
    search(
        "Ask",
        &["q", "searchfor", "query"],
        &["ask.com", "ask.*", "search-results.com", "search.ask.com"],
    ),
    search(
        "AOL",
        &["q", "query"],
        &[
            "search.aol.com",
            "search.aol.*",
            "aolsearch.aol.com",
            "aolsearch.aol.*",
            "aolsearch.com",
            "recherche.aol.fr",
            "suche.aol.de",
            "search.aol.co.uk",
            "aol.com/search",
        ],
    ),
    search(
        "AVG",
        &["q"],
        &["isearch.avg.com", "search.avg.com", "mysearch.avg.com"],
    ),
    search("Avast", &["q"], &["search.avast.com"]),
    search(
        "Norton Safe Search",
        &["q"],
        &[
            "search.norton.com",
            "nortonsafe.search.ask.com",
            "safe.search.norton.com",
        ],
    ),
    search("McAfee", &["q"], &["search.mcafee.com"]),
    search(
        "Lycos",
        &["query", "q"],
        &["search.lycos.com", "search.lycos.*", "lycos.com/search"],
    ),
    search("Dogpile", &["q", "qkw"], &["dogpile.com"]),
    search("WebCrawler", &["q", "qkw"], &["webcrawler.com"]),
    search("MetaCrawler", &["q", "qkw"], &["metacrawler.com"]),
    search(
        "Excite",
        &["q", "search"],
        &["excite.com", "msxml.excite.com", "search.excite.*"],
    ),
    search("Info.com", &["qkw", "q"], &["info.com"]),
    search("Search.com", &["q"], &["search.com"]),
    search(
        "Babylon",
        &["q"],
        &["search.babylon.com", "isearch.babylon.com"],
    ),
    search("Conduit", &["q"], &["search.conduit.com"]),
    search("Blekko", &["q"], &["blekko.com"]),
    search("Yippy", &["query"], &["search.yippy.com", "yippy.com"]),
    search("Gigablast", &["q"], &["gigablast.com"]),
    search("Zapmeta", &["q", "query"], &["zapmeta.*"]),
    search("Wolfram Alpha", &["i"], &["wolframalpha.com"]),
    search(
        "Wikipedia",
        &["search"],
        &[
            "wikipedia.org/w/index.php",
            "wikipedia.org/wiki/Special:Search",
        ],
    ),
    search("YouTube", &["search_query", "q"], &["youtube.com/results"]),
    search("Amazon", &["field-keywords", "k"], &["amazon.*/s"]),
    search("eBay", &["_nkw"], &["ebay.*/sch"]),
    // ---- search: regional ----
    search_enc(
        "Baidu",
        &["wd", "word", "kw"],
        "gbk",
        &[
            "baidu.com",
            "baidu.cn",
            "m.baidu.com",
            "com.baidu.searchbox",
        ],
    ),
    search_enc(
        "Baidu Images",
        &["word", "wd", "kw"],
        "gbk",
        &["image.baidu.com", "images.baidu.com"],
    ),
    search_enc(
        "Baidu Video",
        &["word", "wd"],
        "gbk",
        &["video.baidu.com", "v.baidu.com"],
    ),
    search_enc(
        "Sogou",
        &["query", "keyword", "q"],
        "gbk",
        &["sogou.com", "m.sogou.com", "wap.sogou.com"],
    ),
    search_enc("Sogou Images", &["query"], "gbk", &["pic.sogou.com"]),
    search(
        "360 Search",
        &["q"],
        &["so.com", "haosou.com", "360.cn/search"],
    ),
    search("360 Images", &["q"], &["image.so.com"]),
    search("Shenma", &["q"], &["sm.cn", "m.sm.cn"]),
    search(
        "Yandex",
        &["text", "query"],
        &[
            "yandex.*",
            "ya.ru",
            "ru.yandex.searchplugin",
            "com.yandex.browser",
        ],
    ),
    search(
        "Yandex Images",
        &["text"],
        &["images.yandex.*", "yandex.*/images"],
    ),
    search("Yandex Video", &["text"], &["yandex.*/video"]),
    search("Yandex Market", &["text"], &["market.yandex.*"]),
    search(
        "Mail.ru",
        &["q", "words"],
        &["go.mail.ru", "search.mail.ru"],
    ),
    search(
        "Rambler",
        &["query", "words"],
        &["nova.rambler.ru", "search.rambler.ru", "rambler.ru/search"],
    ),
    search_enc(
        "Naver",
        &["query"],
        "euc-kr",
        &[
            "search.naver.com",
            "m.search.naver.com",
            "com.nhn.android.search",
        ],
    ),
    search("Naver Shopping", &["query"], &["search.shopping.naver.com"]),
    search_enc(
        "Daum",
        &["q"],
        "euc-kr",
        &["search.daum.net", "m.search.daum.net"],
    ),
    search("Zum", &["query"], &["search.zum.com"]),
    search("Nate", &["q"], &["search.nate.com"]),
    search(
        "Seznam",
        &["q"],
        &["search.seznam.cz", "seznam.cz/hledat", "hledat.seznam.cz"],
    ),
    search(
        "Seznam Images",
        &["q"],
        &["obrazky.seznam.cz", "obrazky.cz"],
    ),
    search("Seznam Zbozi", &["q"], &["zbozi.cz"]),
    search("Coc Coc", &["query"], &["coccoc.com"]),
    search("Najdi.si", &["q"], &["najdi.si"]),
    search("Walla", &["q"], &["search.walla.co.il"]),
    search("Onet", &["qt", "q"], &["szukaj.onet.pl"]),
    search("Wirtualna Polska", &["szukaj", "q"], &["szukaj.wp.pl"]),
    search("Interia", &["q"], &["szukaj.interia.pl"]),
    search("T-Online", &["q"], &["suche.t-online.de"]),
    search("WEB.DE", &["su", "q"], &["suche.web.de"]),
    search(
        "GMX",
        &["su", "q"],
        &[
            "suche.gmx.net",
            "suche.gmx.at",
            "suche.gmx.ch",
            "search.gmx.com",
            "search.gmx.co.uk",
            "recherche.gmx.fr",
        ],
    ),
    search("1&1", &["su", "q"], &["search.1und1.de"]),
    search("Freenet", &["query", "q"], &["suche.freenet.de"]),
    search(
        "Orange",
        &["kw", "q"],
        &["lemoteur.orange.fr", "search.orange.co.uk"],
    ),
    search("Free", &["q"], &["search.free.fr"]),
    search("Virgilio", &["qs", "q"], &["ricerca.virgilio.it"]),
    search("Libero", &["query", "q"], &["arianna.libero.it"]),
    search("Terra", &["query", "q"], &["buscador.terra.*"]),
    search("UOL", &["q"], &["busca.uol.com.br"]),
    search("Tut.by", &["query"], &["search.tut.by"]),
    search("Ukr.net", &["q"], &["search.ukr.net"]),
    search("Meta.ua", &["q"], &["meta.ua"]),
    search("Sapo", &["q"], &["pesquisa.sapo.pt"]),
    search("Kvasir", &["q"], &["kvasir.no"]),
    search("Eniro", &["search_word", "q"], &["eniro.se"]),
    search("Arama", &["q"], &["arama.com"]),
    search("Daum Kakao", &["q"], &["search.kakao.com"]),
    // ---- search: Japan ----
    search_enc(
        "goo",
        &["MT", "mt", "q"],
        "euc-jp",
        &["search.goo.ne.jp", "search.mobile.goo.ne.jp"],
    ),
    search_enc(
        "BIGLOBE",
        &["q"],
        "shift_jis",
        &["search.biglobe.ne.jp", "cgi.search.biglobe.ne.jp"],
    ),
    search_enc(
        "@nifty",
        &["q", "Text"],
        "shift_jis",
        &["search.nifty.com", "azby.search.nifty.com"],
    ),
    search_enc(
        "Rakuten",
        &["qt", "q"],
        "shift_jis",
        &["websearch.rakuten.co.jp"],
    ),
    search(
        "Rakuten Ichiba",
        &["sitem", "keyword"],
        &["search.rakuten.co.jp"],
    ),
    search("docomo", &["MT", "q"], &["search.smt.docomo.ne.jp"]),
    search("au", &["q", "MT"], &["search.auone.jp"]),
    search(
        "Excite Japan",
        &["q", "search"],
        &["websearch.excite.co.jp"],
    ),
    search("Livedoor", &["q"], &["search.livedoor.com"]),
    search("Fresh Eye", &["kw"], &["search.fresheye.com"]),
    search("Kakaku.com", &["query"], &["search.kakaku.com"]),
    // ---- search: shopping and price comparison ----
    search(
        "PriceRunner",
        &["q"],
        &[
            "pricerunner.com",
            "pricerunner.co.uk",
            "pricerunner.se",
            "pricerunner.dk",
            "pricerunner.de",
        ],
    ),
    search("idealo", &["q"], &["idealo.*"]),
    search(
        "Geizhals",
        &["fs"],
        &[
            "geizhals.at",
            "geizhals.de",
            "geizhals.eu",
            "skinflint.co.uk",
        ],
    ),
    search("Kelkoo", &["siteSearchQuery", "q"], &["kelkoo.*"]),
    search(
        "PriceGrabber",
        &["form_keyword", "q"],
        &["pricegrabber.com"],
    ),
    search("Shopzilla", &["keyword", "q"], &["shopzilla.com"]),
    search("Bizrate", &["keyword", "q"], &["bizrate.com"]),
    search("Nextag", &["search", "q"], &["nextag.com"]),
    search(
        "PriceSpy",
        &["search", "q"],
        &["pricespy.co.uk", "pricespy.co.nz", "prisjakt.nu"],
    ),
    search("Ceneo", &["szukaj", "q"], &["ceneo.pl"]),
    search("Heureka", &["h[fraze]", "q"], &["heureka.cz", "heureka.sk"]),
    search("billiger.de", &["searchstring", "q"], &["billiger.de"]),
    search("Google Play", &["q"], &["play.google.com/store/search"]),
    // ---- social: networks ----
    social(
        "Facebook",
        &[
            "facebook.com",
            "fb.com",
            "fb.me",
            "fb.watch",
            "facebook.net",
            "fbcdn.net",
            "com.facebook.katana",
            "com.facebook.lite",
        ],
    ),
    social(
        "Messenger",
        &[
            "messenger.com",
            "m.me",
            "com.facebook.orca",
            "com.facebook.mlite",
        ],
    ),
    social(
        "Instagram",
        &[
            "instagram.com",
            "instagr.am",
            "ig.me",
            "com.instagram.android",
        ],
    ),
    social(
        "Threads",
        &["threads.net", "threads.com", "com.instagram.barcelona"],
    ),
    social(
        "X",
        &[
            "twitter.com",
            "x.com",
            "t.co",
            "mobile.twitter.com",
            "tweetdeck.com",
            "pro.x.com",
            "com.twitter.android",
        ],
    ),
    social(
        "LinkedIn",
        &[
            "linkedin.com",
            "lnkd.in",
            "linkedin.cn",
            "com.linkedin.android",
        ],
    ),
    social("Reddit", &["reddit.com", "redd.it", "com.reddit.frontpage"]),
    social(
        "YouTube",
        &[
            "youtube.com",
            "youtu.be",
            "youtube-nocookie.com",
            "com.google.android.youtube",
        ],
    ),
    social("Pinterest", &["pinterest.*", "pin.it", "com.pinterest"]),
    social(
        "TikTok",
        &[
            "tiktok.com",
            "vm.tiktok.com",
            "com.zhiliaoapp.musically",
            "com.ss.android.ugc.trill",
        ],
    ),
    social("Snapchat", &["snapchat.com", "com.snapchat.android"]),
    social("Tumblr", &["tumblr.com", "t.umblr.com"]),
    social("Bluesky", &["bsky.app", "bsky.social", "go.bsky.app"]),
    social(
        "Mastodon",
        &[
            "mastodon.social",
            "mastodon.online",
            "mstdn.social",
            "mastodon.world",
            "mas.to",
            "mstdn.jp",
            "pawoo.net",
            "fosstodon.org",
            "hachyderm.io",
            "infosec.exchange",
        ],
    ),
    social("Misskey", &["misskey.io"]),
    social("Quora", &["quora.com"]),
    social("Medium", &["medium.com"]),
    social("Substack", &["substack.com"]),
    social("Twitch", &["twitch.tv"]),
    social("Vimeo", &["vimeo.com"]),
    social("Flickr", &["flickr.com", "flic.kr"]),
    social("Hacker News", &["news.ycombinator.com"]),
    social("Product Hunt", &["producthunt.com"]),
    social(
        "Discord",
        &["discord.com", "discord.gg", "discordapp.com", "com.discord"],
    ),
    social("Slack", &["slack.com", "app.slack.com", "com.slack"]),
    social(
        "Microsoft Teams",
        &["teams.microsoft.com", "teams.live.com"],
    ),
    social(
        "Telegram",
        &[
            "t.me",
            "telegram.me",
            "telegram.org",
            "web.telegram.org",
            "org.telegram.messenger",
        ],
    ),
    social(
        "WhatsApp",
        &[
            "whatsapp.com",
            "web.whatsapp.com",
            "wa.me",
            "chat.whatsapp.com",
            "com.whatsapp",
            "com.whatsapp.w4b",
        ],
    ),
    social(
        "Signal",
        &["signal.org", "signal.me", "org.thoughtcrime.securesms"],
    ),
    social("Viber", &["viber.com", "com.viber.voip"]),
    social(
        "WeChat",
        &[
            "weixin.qq.com",
            "wechat.com",
            "mp.weixin.qq.com",
            "com.tencent.mm",
        ],
    ),
    social("QQ", &["qzone.qq.com", "im.qq.com", "com.tencent.mobileqq"]),
    social(
        "Weibo",
        &["weibo.com", "weibo.cn", "t.cn", "com.sina.weibo"],
    ),
    social("Douban", &["douban.com"]),
    social("Zhihu", &["zhihu.com"]),
    social("Bilibili", &["bilibili.com", "b23.tv"]),
    social("Douyin", &["douyin.com"]),
    social("Xiaohongshu", &["xiaohongshu.com", "xhslink.com"]),
    social("Baidu Tieba", &["tieba.baidu.com"]),
    social("Renren", &["renren.com"]),
    social(
        "VK",
        &[
            "vk.com",
            "vk.ru",
            "vkontakte.ru",
            "m.vk.com",
            "com.vkontakte.android",
        ],
    ),
    social("Odnoklassniki", &["ok.ru", "odnoklassniki.ru"]),
    social("My World", &["my.mail.ru"]),
    social("Xing", &["xing.com"]),
    social("Nextdoor", &["nextdoor.com"]),
    social("Disqus", &["disqus.com", "disq.us"]),
    social("Digg", &["digg.com"]),
    social("Mix", &["mix.com"]),
    social("StumbleUpon", &["stumbleupon.com"]),
    social("Myspace", &["myspace.com"]),
    social("Tagged", &["tagged.com"]),
    social("Badoo", &["badoo.com"]),
    social("Goodreads", &["goodreads.com"]),
    social("Imgur", &["imgur.com"]),
    social("9GAG", &["9gag.com"]),
    social("Skyrock", &["skyrock.com"]),
    social("Taringa", &["taringa.net"]),
    social("Plurk", &["plurk.com"]),
    social("Dcard", &["dcard.tw"]),
    social("PTT", &["ptt.cc"]),
    social("BAND", &["band.us"]),
    social("Truth Social", &["truthsocial.com"]),
    social("Google+", &["plus.google.com", "plus.url.google.com"]),
    social("Google Groups", &["groups.google.com"]),
    social("Yelp", &["yelp.*"]),
    social("TripAdvisor", &["tripadvisor.*"]),
    // ---- social: Japan and Korea ----
    social(
        "LINE",
        &[
            "line.me",
            "lin.ee",
            "line.naver.jp",
            "jp.naver.line.android",
        ],
    ),
    social("note", &["note.mu", "note.com"]),
    social("Hatena Bookmark", &["b.hatena.ne.jp"]),
    social("Hatena", &["hatena.ne.jp", "hatena.com"]),
    social(
        "Hatena Blog",
        &[
            "hatenablog.com",
            "hatenablog.jp",
            "hateblo.jp",
            "hatenadiary.com",
            "hatenadiary.jp",
        ],
    ),
    social("mixi", &["mixi.jp", "mixi.social"]),
    social("Ameba", &["ameblo.jp", "ameba.jp", "amebaownd.com"]),
    social("GREE", &["gree.jp", "gree.net"]),
    social(
        "niconico",
        &["nicovideo.jp", "nico.ms", "nicoad.nicovideo.jp"],
    ),
    social("pixiv", &["pixiv.net"]),
    social("Togetter", &["togetter.com"]),
    social("Yahoo! Chiebukuro", &["chiebukuro.yahoo.co.jp"]),
    social("5ch", &["5ch.net", "2ch.net"]),
    social("Naver Blog", &["blog.naver.com", "m.blog.naver.com"]),
    social("Naver Cafe", &["cafe.naver.com", "m.cafe.naver.com"]),
    social("Daum Cafe", &["cafe.daum.net"]),
    social("KakaoStory", &["story.kakao.com"]),
    social(
        "KakaoTalk",
        &["open.kakao.com", "talk.kakao.com", "com.kakao.talk"],
    ),
    social("Tistory", &["tistory.com"]),
    // ---- email: webmail ----
    email(
        "Gmail",
        &[
            "mail.google.com",
            "inbox.google.com",
            "gmail.com",
            "com.google.android.gm",
            "com.google.android.gm.lite",
        ],
    ),
    email(
        "Outlook",
        &[
            "outlook.live.com",
            "outlook.office.com",
            "outlook.office365.com",
            "outlook.cloud.microsoft",
            "mail.live.com",
            "hotmail.com",
            "outlook.com",
            "hotmail.*",
            "live.com/mail",
            "com.microsoft.office.outlook",
        ],
    ),
    email(
        "Yahoo! Mail",
        &[
            "mail.yahoo.com",
            "mail.yahoo.net",
            "mail.yahoo.*",
            "com.yahoo.mobile.client.android.mail",
        ],
    ),
    email(
        "Yahoo! JAPAN Mail",
        &["mail.yahoo.co.jp", "jp.co.yahoo.android.ymail"],
    ),
    email(
        "AOL Mail",
        &[
            "mail.aol.com",
            "webmail.aol.com",
            "mail.aol.*",
            "aol.com/webmail",
        ],
    ),
    email("iCloud Mail", &["icloud.com", "mail.icloud.com", "me.com"]),
    email(
        "Proton Mail",
        &[
            "mail.proton.me",
            "mail.protonmail.com",
            "protonmail.com",
            "proton.me/mail",
            "ch.protonmail.android",
        ],
    ),
    email(
        "Tuta",
        &[
            "mail.tutanota.com",
            "app.tuta.com",
            "tutanota.com",
            "tuta.com",
        ],
    ),
    email(
        "Fastmail",
        &["fastmail.com", "app.fastmail.com", "fastmail.fm"],
    ),
    email("Zoho Mail", &["mail.zoho.com", "mail.zoho.*"]),
    email(
        "GMX",
        &[
            "gmx.net",
            "gmx.de",
            "gmx.at",
            "gmx.ch",
            "gmx.com",
            "gmx.co.uk",
            "gmx.fr",
            "gmx.es",
            "navigator.gmx.net",
        ],
    ),
    email(
        "WEB.DE",
        &[
            "web.de",
            "navigator.web.de",
            "3c.web.de",
            "3c-bap.web.de",
            "email.web.de",
        ],
    ),
    email("mail.com", &["mail.com"]),
    email(
        "1&1 Mail",
        &["email.1und1.de", "mail.ionos.com", "mail.ionos.de"],
    ),
    email("T-Online Mail", &["email.t-online.de", "mail.t-online.de"]),
    email("Freenet Mail", &["webmail.freenet.de"]),
    email(
        "Mail.ru",
        &[
            "e.mail.ru",
            "touch.mail.ru",
            "m.mail.ru",
            "octavius.mail.ru",
            "win.mail.ru",
            "ru.mail.mailapp",
        ],
    ),
    email(
        "Yandex Mail",
        &[
            "mail.yandex.ru",
            "mail.yandex.com",
            "mail.yandex.*",
            "mail.ya.ru",
            "360.yandex.ru/mail",
            "ru.yandex.mail",
        ],
    ),
    email("Rambler Mail", &["mail.rambler.ru"]),
    email("Ukr.net Mail", &["mail.ukr.net"]),
    email("Naver Mail", &["mail.naver.com", "m.mail.naver.com"]),
    email("Daum Mail", &["mail.daum.net"]),
    email("Kakao Mail", &["mail.kakao.com"]),
    email("Nate Mail", &["mail.nate.com"]),
    email(
        "QQ Mail",
        &["mail.qq.com", "exmail.qq.com", "wx.mail.qq.com"],
    ),
    email(
        "NetEase Mail",
        &[
            "mail.163.com",
            "mail.126.com",
            "mail.yeah.net",
            "email.163.com",
        ],
    ),
    email("Sina Mail", &["mail.sina.com.cn", "mail.sina.com"]),
    email("Sohu Mail", &["mail.sohu.com"]),
    email("Seznam Email", &["email.seznam.cz", "posta.seznam.cz"]),
    email(
        "Orange Mail",
        &[
            "messagerie.orange.fr",
            "mail.orange.fr",
            "webmail.orange.fr",
        ],
    ),
    email("SFR Mail", &["webmail.sfr.fr", "messagerie.sfr.fr"]),
    email("Free Mail", &["webmail.free.fr", "zimbra.free.fr"]),
    email("La Poste Mail", &["webmail.laposte.net"]),
    email("Libero Mail", &["mail.libero.it"]),
    email("Virgilio Mail", &["mail.virgilio.it", "mail.tim.it"]),
    email("Onet Poczta", &["poczta.onet.pl"]),
    email("WP Poczta", &["poczta.wp.pl"]),
    email("Interia Poczta", &["poczta.interia.pl"]),
    email("o2 Poczta", &["poczta.o2.pl"]),
    email("Rediffmail", &["mail.rediff.com", "rediffmail.com"]),
    email("Comcast Mail", &["connect.xfinity.com", "mail.comcast.net"]),
    email("AT&T Mail", &["mail.att.net", "att.net/mail"]),
    email("Verizon Mail", &["mail.verizon.com"]),
    email("BT Mail", &["mail.bt.com", "btinternet.com"]),
    email("Telstra Mail", &["mail.bigpond.com"]),
    email("UOL Mail", &["email.uol.com.br"]),
    email("Terra Mail", &["mail.terra.com.br"]),
    email("Hey", &["app.hey.com"]),
    email(
        "Rakuten Mail",
        &[
            "mail.rakuten.co.jp",
            "webmail.rakuten.co.jp",
            "mail.rakuten.com",
        ],
    ),
    email("docomo Mail", &["mail.smt.docomo.ne.jp"]),
    email("au Mail", &["mail.auone.jp", "webmail.auone.jp"]),
    email(
        "SoftBank Mail",
        &["webmail.softbank.jp", "mail.softbank.jp"],
    ),
    email("@nifty Mail", &["webmail.nifty.com", "mail.nifty.com"]),
    email(
        "BIGLOBE Mail",
        &["webmail.biglobe.ne.jp", "email.biglobe.ne.jp"],
    ),
    email("OCN Mail", &["mail.ocn.ne.jp", "webmail.ocn.ne.jp"]),
    email("So-net Mail", &["webmail.so-net.ne.jp"]),
    // ---- chatbots: AI assistants ----
    chatbot(
        "ChatGPT",
        &["chatgpt.com", "chat.openai.com", "com.openai.chatgpt"],
    ),
    chatbot(
        "Perplexity",
        &[
            "perplexity.ai",
            "perplexity.com",
            "ai.perplexity.app.android",
        ],
    ),
    chatbot(
        "Gemini",
        &[
            "gemini.google.com",
            "bard.google.com",
            "aistudio.google.com",
            "notebooklm.google.com",
        ],
    ),
    chatbot(
        "Microsoft Copilot",
        &[
            "copilot.microsoft.com",
            "copilot.cloud.microsoft",
            "m365.cloud.microsoft/chat",
            "edgeservices.bing.com",
            "bing.com/chat",
            "copilot.com",
        ],
    ),
    chatbot(
        "Claude",
        &["claude.ai", "claude.com", "com.anthropic.claude"],
    ),
    chatbot("You.com", &["you.com"]),
    chatbot("Phind", &["phind.com"]),
    chatbot("Poe", &["poe.com"]),
    chatbot("DeepSeek", &["chat.deepseek.com", "deepseek.com"]),
    chatbot("Mistral Le Chat", &["chat.mistral.ai"]),
    chatbot("Meta AI", &["meta.ai"]),
    chatbot("Grok", &["grok.com", "x.com/i/grok", "grok.x.ai"]),
    chatbot("Character.AI", &["character.ai"]),
    chatbot("Pi", &["pi.ai"]),
    chatbot("HuggingChat", &["huggingface.co/chat"]),
    chatbot("Kimi", &["kimi.moonshot.cn", "kimi.com"]),
    chatbot(
        "Qwen",
        &["tongyi.aliyun.com", "chat.qwen.ai", "qianwen.aliyun.com"],
    ),
    chatbot("ERNIE Bot", &["yiyan.baidu.com"]),
    chatbot("Doubao", &["doubao.com"]),
    chatbot("Duck.ai", &["duck.ai"]),
    chatbot("Felo", &["felo.ai"]),
    chatbot("Genspark", &["genspark.ai"]),
    // ---- paid: ad click hosts (click ids on the page URL are recognised too) ----
    paid(
        "Google Ads",
        &[
            "googleadservices.com",
            "doubleclick.net",
            "googlesyndication.com",
            "syndicatedsearch.goog",
            "adservice.google.*",
            "google.*/aclk",
        ],
    ),
    paid(
        "Microsoft Advertising",
        &["bing.com/aclick", "bing.com/aclk"],
    ),
    paid("Yandex Direct", &["yabs.yandex.ru", "an.yandex.ru"]),
    paid("Taboola", &["taboola.com", "trc.taboola.com"]),
    paid("Outbrain", &["outbrain.com", "paid.outbrain.com"]),
    paid("Criteo", &["criteo.com"]),
    // ---- known sites that are none of the above ----
    site("Google Docs", &["docs.google.com"]),
    site("Google Drive", &["drive.google.com"]),
    site("Google Sites", &["sites.google.com"]),
    site("Google Classroom", &["classroom.google.com"]),
    site("Google Accounts", &["accounts.google.com"]),
    site("Google Maps", &["maps.google.*", "google.*/maps"]),
    site(
        "Google Translate",
        &["translate.google.*", "translate.goog"],
    ),
    site("Google Play", &["play.google.com"]),
    site("Google AMP", &["ampproject.org", "cdn.ampproject.org"]),
    // ---- more, by the hosts real referrers show ----
    search(
        "Google Images",
        &["q", "as_q"],
        &["google.*/imgres", "google.*/images"],
    ),
    search("Babylon", &["q"], &["searchassist.babylon.com"]),
    search("Voila", &["kw", "rdata"], &["search.voila.fr", "voila.fr"]),
    search("Dalesearch", &["q"], &["dalesearch.com"]),
    search("1&1", &["su", "q"], &["suche.1und1.de"]),
    search("GMX", &["su", "q"], &["suche.gmx.de"]),
    social("Workplace", &["workplace.com"]),
    social("Lnk.Bio", &["lnk.bio"]),
    social("Linktree", &["linktr.ee"]),
    email(
        "GMX",
        &[
            "gmx.*",
            "deref-gmx.*",
            "deref-gmx.net",
            "deref-gmx.com",
            "deref-gmx.de",
        ],
    ),
    email("WEB.DE", &["deref-web.de", "deref-web-02.de"]),
    email("mail.com", &["deref-mail.com"]),
    email("1&1 Mail", &["deref-1und1.de", "deref-1und1-02.de"]),
    email("IONOS Mail", &["email.ionos.*", "mailbusiness.ionos.*"]),
    email("Infomaniak Mail", &["mail.infomaniak.com"]),
    email(
        "Bluewin Mail",
        &[
            "email.bluewin.ch",
            "rich-v01.bluewin.ch",
            "rich-v02.bluewin.ch",
        ],
    ),
    email("UPC Mail", &["upcmail.hispeed.ch"]),
    email(
        "Vodafone Mail",
        &["mail.vodafone.de", "webmail.vodafone.de"],
    ),
    email(
        "Orange Mail",
        &[
            "mail01.orange.fr",
            "mail02.orange.fr",
            "wmail.orange.fr",
            "webmail1m.orange.fr",
            "messageriepro.orange.fr",
            "messageriepro3.orange.fr",
        ],
    ),
    email("TIM Mail", &["webmail.tim.it"]),
    paid("Google Ads", &["adsensecustomsearchads.com"]),
];
