"""The chat's vocabulary: the words and phrase patterns the router matches.

Owns the tables only (regular-expression source strings and small word maps);
`router.py` owns how they are matched and what each match means. Patterns here are
matched against the router's normalised form of a message: lower case, single
spaces, politeness and end punctuation gone. Named groups are read by the router:
``ref`` (a node reference: "#3", "image 3", "the third one", "the original"),
``count``/``times``/``qty`` (numbers), ``fmt``/``as`` (export formats).
"""

from __future__ import annotations

NUMBER_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5,
    "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
}
QUANTITY_WORDS = {
    "a": 1, "an": 1, "another": 1, "once": 1, "twice": 2, "thrice": 3,
    "a couple": 2, "a couple of": 2, "couple": 2, "couple of": 2, "a few": 3, "few": 3,
}
ORDINAL_WORDS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6,
    "seventh": 7, "eighth": 8, "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12,
}
# Images named by where they stand rather than by number; the service resolves them.
ANCHOR_WORDS = {
    "original": "original", "very first": "original", "start": "original", "beginning": "original",
    "very start": "original", "very beginning": "original",
    "starting": "original", "initial": "original", "source": "original", "uploaded": "original",
    "last": "latest", "latest": "latest", "newest": "latest", "most recent": "latest", "final": "latest",
    "previous": "previous", "prior": "previous", "earlier": "previous", "one before": "previous",
    "one before that": "previous", "one before this": "previous", "one from before": "previous",
}

NUM = r"(?:\d+|" + "|".join(NUMBER_WORDS) + r")"
_IMAGE_NOUN = r"(?:one|image|picture|pic|photo|version|result|take|try|attempt|render|output|edit)"
REF_NOUN = r"(?:image|picture|pic|photo|version|node|number|no\.|nr\.?)"
# A node reference that cannot be mistaken for a quantity: "#3", "image 3", "picture #3",
# "image two" (the router reads the number word).
REF = rf"(?:#\s*\d+|{REF_NOUN}\s*#?\s*\d+|{REF_NOUN}\s+(?:" + "|".join(NUMBER_WORDS) + r")\b)"
# "the third image", "the 2nd one", "the original", "the last one", "the one before".
ORDINAL_REF = (
    r"(?:the\s+|my\s+)?(?:"
    r"(?:" + "|".join(ORDINAL_WORDS) + r"|\d+(?:st|nd|rd|th))(?:\s+" + _IMAGE_NOUN + r")?"
    r"|(?:very\s+first|original|initial|uploaded|source)(?:\s+" + _IMAGE_NOUN + r")?"
    r"|(?:very\s+)?(?:start|beginning)"
    r"|(?:last|latest|newest|most\s+recent|final)(?:\s+" + _IMAGE_NOUN + r")?"
    r"|(?:previous|prior|earlier)\s+" + _IMAGE_NOUN
    + r"|one\s+(?:from\s+)?before(?:\s+(?:that|this|it)(?:\s+one)?)?"
    r")"
)
# In a whole-message command a bare number is a node too: "revert to 3".
REF_OR_NUMBER = rf"(?:{REF}|{ORDINAL_REF}|\d+)"

# ---------------------------------------------------------------- slash commands

SLASH = r"/(?:[A-Za-z][\w-]*)?(?=\s|$)"
SLASH_ALIASES = {"checkout": "goto", "variation": "variations", "generate": "new"}
FORMAT_ALIASES = {
    "png": "png", "jpeg": "jpeg", "jpg": "jpeg", "webp": "webp",
    "history": "history", "zip": "history", "all": "history", "everything": "history", "tree": "history",
}

# ---------------------------------------------------------------- cleaning

# Politeness in front of a request; stripping it keeps the instruction readable
# ("can you make it look like a watercolor?" -> "make it look like a watercolor").
POLITE_PREFIX = (
    r"(?:please|pls|plz|kindly|(?:can|could|would|will)\s+(?:you|u|we)(?:\s+please)?"
    r"|i(?:['’]d|\s+would)\s+like\s+you\s+to|i\s+(?:want|need)\s+you\s+to|go\s+ahead\s+and"
    r"|let['’]?s|now|just|ok(?:ay)?|hey|hi|hello|alright|oops|ugh)\b[\s,.!:;-]*"
)
# Interjections only matter for recognising commands ("no, undo that"); they are
# never cut from an edit, where "no" can carry meaning ("no rain").
INTERJECTION = (
    r"(?:(?:no|nah|nope|wait|actually|well|oh|ah|yes|yeah|yep|great|nice|cool|good|hm+|uh+|um+)\s*[,.!]+"
    r"|(?:hm+|argh|right|so)\b)\s*"
)
# Thanks only counts after punctuation: "add a sign that says thank you" keeps its words.
POLITE_SUFFIX = r"(?:\s*[,.!]\s*(?:thanks|thank\s+you|thx|cheers)|[\s,]+(?:please|pls|plz))+[\s.!?]*$"
LEADING_JOINER = r"(?:(?:and\s+then|and|then)\b|[,:;-])\s*"

# ---------------------------------------------------------------- whole-message commands

THIS = r"(?:it|this|that|this\s+one|that\s+one)"
# Verbs that move to a node with "to": "go back to #3", "switch to image 3".
MOVE_TO = (r"(?:(?:go|jump|switch|move|return|get|take\s+me|roll|head|revert|reset|rewind|flip)\s+)?"
           r"(?:back\s+)?to")
STEP_NOUN = r"(?:\s+(?:ones?|steps?|changes?|edits?|times?|images?|versions?))?"
STEP_COUNT = rf"(?:\s+(?P<count>{NUM}|a|an))?{STEP_NOUN}(?:\s+(?P<times>once|twice|thrice))?"
LAST = r"(?:\s+(?:that|it|this))?(?:\s+(?:the\s+|my\s+|your\s+)?last)?"
# "see", also as a wish: "can I see", "I'd like to see", "let me see" ("can we" is politeness).
SEE = (r"(?:(?:can|could|may)\s+i\s+|i(?:'d|\s+would)\s+like\s+to\s+|i\s+(?:want|wanna)\s+to\s+"
       r"|let\s+(?:me|us)\s+)?see")
SHOW = rf"(?:show|view|{SEE}|display|list|print|open|give|pull\s+up|bring\s+up)(?:\s+(?:me|us))?"
AGAIN = r"(?:\s+(?:again|once\s+more|one\s+more\s+time))?"
# "the first picture was better": a preference for an image is a wish to go back to it.
WAS_BETTER = r"(?:\s+(?:was|is|looked|looks)\s+(?:(?:much|way|a\s+lot)\s+)?(?:better|best|nicer))?"
VARIATION_LEAD = (
    r"(?:(?:(?:can|could|may)\s+i\s+)?(?:give|show|make|generate|create|get|render|do|produce|have|take|try)"
    r"(?:\s+(?:me|us|it))?\s+"
    r"|(?:see|let\s+me\s+see|let\s+me\s+have|i\s+want|i'd\s+like|how\s+about|what\s+about)\s+)?"
)
VARIATION_QTY = (
    rf"(?:(?P<qty>{NUM}|a\s+few|a\s+couple(?:\s+of)?|couple(?:\s+of)?|few|some|a|an|another)\s+)?"
    r"(?:(?:more|other|different|new|alternative|random|fresh|second)\s+)*"
)
VARIATION_NOUN = (r"(?P<noun>variations?|versions?|alternatives?|options?|variants?|takes?|tries|attempts?"
                  r"|goes|go|shots?|spins?|rolls?)")
VARIATION_OF = rf"(?:\s+(?:of|for|from|on|at)\s+(?:{THIS}|(?P<ref>{REF_OR_NUMBER})))?"
# "again but different", "same but with another seed": another take, no new words.
DIFFERENTLY = (
    r"(?:\s*,?\s*(?:but\s+)?(?:different(?:ly)?|(?:a\s+)?(?:bit\s+|little\s+)?different(?:ly)?"
    r"|(?:with\s+)?(?:a\s+)?(?:new|different|another|fresh)\s+seed|another\s+way|some\s+other\s+way"
    r"|in\s+a\s+different\s+way|with\s+a\s+twist))?"
)
EXPORT_OBJECT = (
    rf"(?:\s+(?:{THIS}|image|the\s+(?:image|picture|photo|result|file|current\s+(?:one|image))"
    rf"|(?P<ref>{REF_OR_NUMBER})))?"
)
SO_FAR = r"(?:\s+(?:so\s+far|until\s+now|up\s+to\s+now))?"
# "all the images (we made) (so far)"
MADE_SO_FAR = rf"(?:\s+(?:that\s+)?(?:we|i|you)(?:'ve|\s+have)?\s+(?:made|done|tried|created|generated|got))?{SO_FAR}"
HISTORY_NOUN = (r"(?:history|tree|timeline|lineage|versions|edits|changes|steps|images|pictures|progress"
                r"|iterations|attempts)")

# Whole-message command phrases, tried in order; each names the router's builder for it.
COMMANDS = [
    # help and small talk: nothing to run, so show what the chat can do
    (r"help(?:\s+me)?|what\s+can\s+(?:you|i)\s+do|what\s+do\s+you\s+do|how\s+does\s+(?:this|it)\s+work"
     r"|how\s+do\s+i\s+use\s+(?:this|you|it)|(?:(?:show|list)\s+)?(?:the\s+|your\s+)?commands"
     r"|what\s+are\s+(?:the|your)\s+commands|usage|instructions|\?+", "help"),
    (r"thanks|thank\s+you|thx|ok(?:ay)?|cool|nice|great|perfect|awesome|lol|hi|hello|hey", "help"),
    # history
    (rf"(?:{SHOW}\s+|what(?:'s|\s+is)\s+)?(?:the\s+|my\s+|our\s+)?(?:whole\s+|full\s+|entire\s+|complete\s+)?"
     rf"(?:edit(?:ing)?\s+|image\s+|version\s+|undo\s+)?(?:history|tree|timeline|lineage)(?:\s+so\s+far)?"
     rf"|{SHOW}\s+(?:me\s+)?(?:all\s+)?(?:of\s+)?(?:the\s+|my\s+|our\s+)?(?:images|pictures|versions|edits"
     rf"|changes|steps|iterations|attempts|everything){MADE_SO_FAR}"
     rf"|{SHOW}\s+(?:me\s+)?every\s+(?:image|picture|version|edit|step){MADE_SO_FAR}"
     rf"|all\s+(?:the\s+|my\s+)?(?:versions|images|edits){MADE_SO_FAR}"
     rf"|where\s+(?:am\s+i|are\s+we)(?:\s+at)?"
     # "what have we done so far", "show me everything we've done", "what we have so far"
     rf"|(?:{SHOW}\s+)?(?:everything\s+(?:that\s+)?|what\s+)(?:we|i|you)(?:'ve|\s+have|\s+did)?"
     rf"\s+(?:done|made|tried|did|do|make|try|have|got){SO_FAR}"
     rf"|what(?:\s+have|'ve|\s+did)\s+(?:we|i|you)\s+(?:done|do|made|make|tried|try|got){SO_FAR}"
     rf"|how\s+did\s+we\s+get\s+here|recap|summary|overview", "history"),
    # final: a draft again in full quality
    (rf"(?:(?:re-?)?render|redo|make|do|run|give\s+me)\s+(?:{THIS}|(?P<ref>{REF_OR_NUMBER}))\s+(?:again\s+)?"
     r"(?:in|at)\s+(?:full|high|best|final|max(?:imum)?)\s+quality"
     r"|(?:a\s+|the\s+)?(?:full[-\s]quality|final|high[-\s]quality)\s+(?:render|version)(?:\s+(?:of|for)\s+"
     rf"(?:{THIS}|(?P<ref2>{REF_OR_NUMBER})))?|finali[sz]e(?:\s+{THIS})?|full\s+quality(?:\s+please)?", "final"),
    # squash: the current line of edits again, as one edit of its first image
    (r"squash(?:\s+(?:it|them|this|that|the\s+(?:chain|edits|history|steps)))?"
     r"|(?:(?:do|redo|apply|make|run)\s+)?(?:all\s+(?:of\s+)?(?:that|this|those|these|the\s+(?:edits|changes|steps))"
     r"|everything|the\s+whole\s+(?:thing|chain))\s+(?:in\s+(?:one|a\s+single)\s+(?:go|edit|step|pass|shot)|at\s+once)"
     r"|(?:combine|merge)\s+(?:all\s+)?(?:the\s+|my\s+|these\s+|those\s+)?(?:edits|changes|steps)"
     r"(?:\s+(?:into|in)\s+(?:one|a\s+single)(?:\s+(?:edit|step))?)?", "squash"),
    # export: the whole history first, so "export everything" is not a format
    (r"(?:export|download|save)(?:\s+(?:the|my))?(?:\s+(?:whole|entire|full|complete))?(?:\s+(?:edit|image))?"
     r"\s+(?:history|tree|everything|session|conversation|all(?:\s+(?:the\s+)?(?:images|pictures|of\s+(?:them|it)))?)"
     r"(?:\s+(?:as\s+(?:a\s+)?)?zip(?:\s+file)?)?", "export_history"),
    (rf"(?:export|download|save){EXPORT_OBJECT}(?:\s+(?P<as>as|to|in|into)(?:\s+(?:a|an))?)?"
     r"(?:\s+(?P<fmt>\.?\w+))?(?:\s+(?:file|format|image))?", "export"),
    # undo
    (rf"undo{LAST}{STEP_COUNT}(?:\s+again)?", "undo"),
    (rf"(?:(?:go|step|move|jump|take\s+(?:me|it))\s+)?back{STEP_COUNT}", "undo"),
    (r"revert(?:\s+(?:that|it|this|(?:the|my|your)\s+last(?:\s+(?:one|change|edit|step))?))?"
     r"|(?:(?:go|jump|switch)\s+(?:back\s+)?to\s+|show(?:\s+me)?\s+|back\s+to\s+)?(?:the\s+)?"
     r"(?:previous|prior|earlier)(?:\s+(?:one|image|picture|version|step|result))?"
     r"|(?:(?:go|jump|switch)\s+(?:back\s+)?to\s+|show(?:\s+me)?\s+|back\s+to\s+)?the\s+one\s+(?:from\s+)?before"
     r"(?:\s+(?:that|this|it)(?:\s+one)?)?", "undo_one"),
    # everything undone is the original again
    (r"(?:undo|revert|reset|reverse)\s+(?:it\s+|them\s+)?(?:everything|all(?:\s+(?:of\s+)?(?:the\s+|my\s+)?"
     r"(?:changes|edits|steps|of\s+(?:it|them)))?)|reset(?:\s+(?:it|this|that|the\s+image))?", "original"),
    # redo
    (r"undo\s+(?:the|that|my)\s+undo", "redo_one"),
    (rf"re-?do{LAST}{STEP_COUNT}", "redo"),
    (rf"(?:(?:go|step|move|jump)\s+)?forward{STEP_COUNT}", "redo"),
    (r"(?:go\s+to\s+)?(?:the\s+)?next(?:\s+(?:one|image|picture|version|step))?", "redo_one"),
    # variations
    (rf"{VARIATION_LEAD}{VARIATION_QTY}{VARIATION_NOUN}{VARIATION_OF}{DIFFERENTLY}", "variations"),
    (rf"{VARIATION_LEAD}(?P<qty>{NUM}|a\s+couple|a\s+few|couple|few|some)\s+more(?:\s+(?:ones|times))?",
     "variations"),
    (rf"{VARIATION_LEAD}another\s+(?P<qty>{NUM})(?:\s+(?:ones|times))?", "variations"),
    (rf"{VARIATION_LEAD}(?:one\s+more|another)(?:\s+(?:one|time|try|go|attempt|shot|take|round|pass))?"
     rf"{DIFFERENTLY}", "variations"),
    (r"(?:(?:try|do|run|make|generate|render|roll|give)(?:\s+(?:it|that|this|one))?\s+)?"
     rf"(?:again|once\s+(?:more|again)|one\s+more\s+time|over){DIFFERENTLY}"
     r"|same\s+(?:thing\s+)?again|try\s+something\s+(?:else|different)"
     r"|(?:same|same\s+thing|same\s+again|same\s+prompt|same\s+request)(?:\s+again)?\s*,?\s*but\s+"
     r"(?:different(?:ly)?|(?:a\s+)?(?:new|different|another)\s+seed)"
     r"|re-?roll(?:\s+(?:it|that|this))?|re-?generate(?:\s+(?:it|that|this))?|retry|re-?try\s+(?:it|that)"
     r"|new\s+seed|different\s+seed|(?:try\s+)?(?:a\s+)?(?:new|different|another)\s+seed|surprise\s+me"
     r"|(?:give\s+it|have)\s+another\s+(?:go|shot|try|spin)|spin\s+again|shuffle", "variations"),
    # checkout
    (rf"(?P<ref>{REF_OR_NUMBER}){AGAIN}{WAS_BETTER}", "checkout"),
    (rf"{MOVE_TO}\s+(?P<ref>{REF_OR_NUMBER}){AGAIN}", "checkout"),
    (rf"(?:show(?:\s+me)?|open|view|{SEE}|display|pull\s+up|bring\s+up|checkout|check\s+out|select|load"
     r"|restore|pick|choose|use"
     r"|(?:continue|start(?:\s+(?:over|again))?|work|go\s+on|carry\s+on)\s+(?:from|with)|from|switch"
     r"|(?:let's\s+)?go\s+with|i\s+(?:like|prefer|want|'ll\s+take)|bring\s+back|get\s+back"
     r"|take|keep|revisit|return\s+to|reopen|re-?open|back\s+to|i\s+liked)"
     rf"\s+(?P<ref>{REF_OR_NUMBER}){AGAIN}(?:\s+(?:best|better|more|back))?", "checkout"),
    (rf"(?:(?:can|could|may)\s+i\s+)?(?:bring|get|put|have)\s+(?P<ref>{REF_OR_NUMBER})\s+back(?:\s+up)?{AGAIN}",
     "checkout"),
    (rf"(?:branch|fork)(?:\s+(?:from|off(?:\s+of)?|at|on))?\s+(?P<ref>{REF_OR_NUMBER})", "checkout"),
]

# "branch from #2 and ...", "go back to #3, ...", "take #4 and ...", "using #2, ...", "#3: ..."
BASE_LEAD = (
    r"(?:(?P<from>(?:(?:branch|fork|start(?:\s+(?:over|again))?|continue|work|edit|go\s+on|carry\s+on"
    r"|starting|working|continuing)\s+)?"
    r"(?:from|off(?:\s+of)?|on|with))"
    rf"|(?P<to>{MOVE_TO})"
    r"|(?P<take>take|open|load|restore|checkout|check\s+out|select|use|using|grab|pick|based\s+on|in|edit))\s+"
    rf"(?P<ref>{REF_OR_NUMBER})"
    r"|(?P<hash>#\s*\d+)"
)
EXPLICIT_SEPARATOR = r"\s*[,:;]\s*(?:and\s+)?(?:then\s+)?|\s+-+\s+|\s+(?:and\s+then|and|then)\s+"
# Two moves in one message: "undo that and make it blue instead". The left part must
# be a whole command on its own; the right part is routed as a message of its own.
SECOND_REQUEST = r"\s*[,;]\s*(?:and\s+)?(?:then\s+)?|\s+(?:and\s+then|and|then)\s+"

# A move verb on something that is not a node: "undo the rain", "revert the colors".
# Could be a step back or an edit that removes the thing, so the chat asks.
AMBIGUOUS_MOVE = (
    r"(?:undo|revert|reverse|take\s+back|roll\s+back)\s+(?:all\s+(?:of\s+)?)?(?:the|that|this|my|your|those|these)\s+"
    r"(?!(?:last|undo|previous)\b)(?P<thing>[\w'-]+(?:\s+[\w'-]+){0,4})"
)

# Words that only say "make a new picture"; whatever follows is the prompt.
GENERATE_LEADS = (
    r"(?:start\s+(?:over|again|fresh|afresh)|begin\s+again|from\s+scratch)\b"
    r"(?:\s*[,:;-]\s*|\s+)?(?:(?:with|of|showing)\b\s*)?(?P<rest>.*)",
    r"(?:a\s+)?(?:brand\s+)?new\s+(?:image|picture|pic)\s*(?:of|showing|with|:)\s*(?P<rest>.*)",
    r"(?:generate|create|draw|paint|render|make|sketch|produce|design|give\s+me|show\s+me)(?:\s+(?:me|us))?\s+"
    r"(?:a\s+new\s+|a\s+|an\s+|new\s+|another\s+)?(?:image|picture|pic)"
    r"\s*(?:of|showing|with|depicting|featuring|:)\s*(?P<rest>.*)",
    # The medium is part of the prompt: "draw a watercolor painting of a harbor".
    r"(?:generate|create|draw|paint|render|sketch|design|make)(?:\s+(?:me|us))?\s+"
    r"(?P<rest>(?:a|an)\s+(?:[\w-]+\s+){0,2}?(?:photo|photograph|painting|drawing|illustration|sketch|portrait"
    r"|rendering|poster|watercolou?r|cartoon|wallpaper)\s+of\s+.+)",
    r"(?:draw|paint|sketch|create|make)\s+me\s+(?P<rest>(?:a|an|some)\s+.+)",
    r"generate\b(?:\s+(?:me|us)\b)?\s*(?P<rest>.*)",
)

# ---------------------------------------------------------------- attached photos

# Words that make an attached photo a source for the current image rather than the
# new picture to edit: "put the hat from this photo on him", "make it look like this".
_ATTACHED = (r"(?:this|these|that|those|the\s+(?:attached|uploaded|new|other|second|2nd|third|3rd|given)"
             r"|my|your|the)")
_PICTURE = r"(?:photos?|pictures?|pics?|images?|ones?|shots?|files?|uploads?|references?|attachments?|examples?)"
REFERENCE_WORDS = (
    r"\b(?:"
    rf"(?:from|using|use|with|like|like\s+in|as\s+in|per)\s+{_ATTACHED}\s+{_PICTURE}"
    r"|(?:from|using|use|with|like)\s+(?:this|these|that|those)\b(?!\s+(?:is|are|was|were)\b)"
    # "make it look like this" (but "make it look like a watercolor" describes a style in words)
    r"|(?:look|looks|looking|appear|seem)\s+(?:more\s+|a\s+bit\s+more\s+|exactly\s+)?like\s+"
    rf"(?:this|these|that|those|them|me|him|her|us|my\s+{_PICTURE}|the\s+(?:attached|uploaded|new|other"
    rf"|second|reference|photos?|pictures?|pics?|images?|ones?)\b"
    rf"|the\s+(?:[\w-]+\s+){{1,2}}(?:in|from|on)\s+{_ATTACHED}\s+{_PICTURE})"  # "like the guy in the photo"
    # "same colours as this", "as bright as this one"
    rf"|(?:same|similar)\s+(?:[\w-]+\s+){{0,3}}?as\s+(?:this|these|that|those|{_ATTACHED}\s+{_PICTURE})\b"
    r"|\bas\s+[\w-]+\s+as\s+(?:this|these|that|those)\b"
    # "this is the background I want"
    r"|(?:this|these|that)\s+(?:is|are)\s+(?:the|my)\s+(?:background|style|look|colou?rs?|palette|mood|lighting"
    r"|texture|pattern|outfit|pose|logo|hat|face|sky)\b"
    r"|(?:in|into)\s+the\s+(?:style|manner|colou?rs?|look|mood|lighting)\s+of"
    r"|(?:style|colou?rs?|palette|lighting|mood|pose|outfit|clothes|face|hair(?:style)?|background|texture"
    r"|pattern|look)\s+(?:of|from)\s+(?:this|these|that|the\s+(?:attached|uploaded|new|other))"
    # "this look" is a noun here; in "make this look like a postcard" it is the verb
    r"|(?:this|that|same|similar|matching)\s+(?:style|look(?!\s+like\b)|mood|palette|vibe|aesthetic)"
    r"|(?:as|for)\s+(?:a|the)?\s*(?:style\s+)?(?:reference|ref|guide|inspiration|template|example|source)"
    r"|reference\s+(?:photo|image|picture|pic)"
    r"|(?:use|using)\s+(?:it|them|both)\b"
    r"|combine|merge|blend|mix|fuse|composite|collage|side\s+by\s+side|together|both\s+(?:photos|pictures|images)"
    r"|(?:picture|image|photo|pic)\s*(?:#\s*)?[2-9]\b|(?:picture|image|photo|pic)\s+(?:two|three|four|five)\b"
    r"|(?:second|third|other)\s+(?:photo|picture|image|pic)"
    r"|(?:add|put|place|insert|paste|stick|overlay|drop|include|attach|apply)\s+(?:this|these|that|those|it|them)\b"
    r"|(?:wear|wearing|hold|holding)\s+(?:this|these|that|those)\b"
    r"|give\s+(?:him|her|them|it|me|us|the\s+[\w-]+)\s+(?:this|these|those)\b"  # not "give it that glow"
    r"|match(?:es|ing)?\s+(?:this|these|that|those|the\s+(?:attached|uploaded|new|other))\b"
    r"|(?:replace|swap|substitute|change)\b.*\bwith\s+(?:this|these|that|those|the\s+(?:attached|uploaded|new))"
    r"|\b(?:onto|on\s+to|into|in)\s+(?:this|these|that)\s+(?:scene|background|setting|place|landscape|world)"
    r"|transfer|copy\s+(?:the|this|that|his|her|their)"
    r"|(?:his|her|their|the)\s+(?:face|pose|outfit|clothes|hat|shirt|jacket|glasses|hair)\s+(?:on|onto)\b"
    r")"
)
# Words that say outright that the attached photo is the picture to edit.
SUBJECT_WORDS = (
    r"\b(?:(?:edit|change|fix|retouch|use)\s+(?:this|the\s+(?:new|attached|uploaded))\s+(?:photo|picture|image|one)"
    r"\s+instead|(?:this|the\s+(?:new|attached|uploaded))\s+(?:photo|picture|image|one)\s+instead"
    # "remove the text from this photo": taking something out of it means editing it
    r"|(?:remove|erase|delete|take\s+out|get\s+rid\s+of|cut\s+out|clean\s+up)\s+(?:(?!and\b|then\b)[\w'-]+\s+){1,4}?"
    r"from\s+(?:this|the\s+(?:new|attached|uploaded))\s+(?:photo|picture|image|pic|one|shot))\b"
)
