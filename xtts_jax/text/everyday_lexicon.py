"""Hand-written word lists for the everyday-sentence generator (``xtts_jax.text.everyday``).

Each list holds one category whose members fit every slot that names it, so a template may say
"I left my {object} at {name}'s house" without checking which object it got. Written for this
project; the frequent-word coverage comes from ``everyday_words.txt`` instead.
"""

from __future__ import annotations

FIRST_NAMES = """Aisha Akira Alice Amir Ana Andre Arjun Beatriz Ben Carla Chen Chloe Daniel Dmitri Elena
Emeka Emily Fatima Felix Grace Hana Hassan Ingrid Isaac Jamal Javier Jing Julia Kai Kenji Laura Layla
Leon Lucas Maria Mateo Maya Mei Mohammed Nadia Noah Olga Omar Oscar Priya Rafael Rosa Samir Sofia
Tariq Tomas Valentina Victor Wei Yusuf Zara Zoe Patrick Megan Gregory Harriet Douglas Yvonne""".split()
SURNAMES = """Adams Baker Chowdhury Costa Dubois Evans Fischer Garcia Hughes Ivanova Jensen Kowalski Lopez
Morgan Nakamura Novak Okafor Patel Quinn Rossi Schmidt Tanaka Usman Vargas Walsh Xu Yilmaz Zhang
Bennett Campbell Fletcher Harper Lindqvist Murphy Pereira Sullivan Thompson Whitaker""".split()
TITLES = ["Dr.", "Mr.", "Ms.", "Mrs.", "Professor", "Captain", "Aunt", "Uncle"]
CITIES = """London Paris Tokyo Chicago Toronto Madrid Berlin Cairo Lagos Mumbai Sydney Denver Seattle
Boston Dublin Lisbon Nairobi Seoul Vienna Prague Oslo Lima Manchester Glasgow Houston Atlanta
Vancouver Melbourne Edinburgh Rome Athens Istanbul Warsaw Montreal Phoenix Portland""".split()
COUNTRIES = """Canada Mexico Brazil Japan Kenya India France Spain Italy Norway Egypt Peru Chile Ireland
Germany Portugal Vietnam Australia Morocco Iceland Scotland Greece Poland Ghana Turkey""".split()
STREETS = ["Main Street", "Oak Avenue", "Maple Road", "Station Road", "High Street", "Elm Street",
           "Church Lane", "Park Avenue", "River Drive", "Mill Lane", "King Street", "Lake View Road"]
WEEKDAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
MONTHS = "January February March April May June July August September October November December".split()
SEASONS = ["spring", "summer", "autumn", "fall", "winter"]

# Things one can buy, carry, lose, lend: "a {object}", "the {object}".
OBJECTS = """umbrella laptop wallet backpack charger notebook passport ticket jacket sweater scarf
blanket lamp kettle toaster bicycle helmet camera guitar calendar envelope stapler keyboard
pillow suitcase ladder hammer screwdriver flashlight mirror candle vase teapot spoon fork
microwave radio printer headset thermos basket shovel hairdryer mattress bookshelf""".split()
# Foods that read well after "some" or "the".
FOODS = """rice bread soup pasta cheese yogurt coffee tea butter honey salad chicken salmon
oatmeal cereal lemonade pizza chocolate popcorn spinach broccoli garlic ginger cinnamon
pancakes noodles tomatoes potatoes carrots apples bananas grapes strawberries mushrooms
beans lentils peppers onions cucumbers blueberries avocados""".split()
# Places in a town: "at the {venue}", "to the {venue}".
VENUES = """library station airport bakery pharmacy hospital museum bank gym stadium cinema theater
market supermarket hotel restaurant cafe clinic school university office factory harbor garage
playground zoo aquarium laundromat bookstore courthouse""".split() + ["post office", "town hall"]
ROOMS = ["kitchen", "living room", "basement", "attic", "garage", "hallway", "bathroom", "bedroom",
         "dining room", "garden", "balcony", "office", "laundry room", "porch"]
JOBS = """nurse teacher plumber electrician pilot chef lawyer dentist farmer architect librarian
mechanic engineer accountant firefighter carpenter journalist pharmacist photographer
scientist translator cashier gardener painter surgeon programmer""".split()
RELATIVES = ["sister", "brother", "mother", "father", "cousin", "aunt", "uncle", "grandmother",
             "grandfather", "neighbor", "roommate", "boss", "landlord", "colleague", "daughter", "son"]
VEHICLES = ["bus", "train", "ferry", "taxi", "tram", "subway", "plane", "bike", "car", "van"]
ANIMALS = """dog cat parrot horse rabbit hamster goat cow sheep duck goose pigeon squirrel fox deer
owl turtle frog lizard goldfish donkey""".split()
COLORS = "red blue green yellow orange purple gray black white brown pink silver golden navy".split()
FEELINGS = ["tired", "hungry", "nervous", "excited", "worried", "relieved", "bored", "thrilled",
            "annoyed", "sleepy", "grateful", "confused", "proud", "cheerful", "curious"]
WEATHER = ["rainy", "windy", "foggy", "sunny", "chilly", "humid", "stormy", "freezing", "cloudy", "mild"]
# Base verb phrases that follow "to", "can", "will", "should", "let's".
ACTIVITIES = """repot the cactus|pick up the kids|finish the report|call the plumber|book a table
|cancel the subscription|renew my passport|clean the windows|fix the leaking tap|walk the dog
|buy some stamps|return the library books|charge the batteries|pay the electricity bill
|change the light bulb|iron my shirt|wash the dishes|fill up the car|order new glasses
|feed the cat|check the mailbox|bake a birthday cake|paint the fence|sort the recycling
|print the boarding passes|mow the lawn|vacuum the stairs|repair the bicycle|update the software
|practice the piano|learn some Spanish|visit my grandparents|meet the new neighbors""".replace(
    "\n", "").split("|")
HOBBIES = ["gardening", "knitting", "hiking", "swimming", "chess", "painting", "fishing", "cycling",
           "photography", "baking", "running", "rowing", "pottery", "birdwatching", "yoga", "tennis"]
# Hyphenated describing words: "a {hyphenated} {object}".
HYPHENATED = ["brand-new", "second-hand", "well-known", "old-fashioned", "part-time", "long-term",
              "hand-made", "low-cost", "full-size", "high-speed", "user-friendly", "last-minute",
              "one-way", "ready-made", "short-lived", "eye-catching", "water-proof", "self-cleaning"]
ADJECTIVES = """small large heavy light cheap expensive quiet noisy clean dirty modern ancient
warm cold bright dark narrow wide simple strange useful broken shiny soft sharp smooth
fancy plain crowded empty comfortable wonderful terrible lovely tiny enormous""".split()
# -ly words the templates put after a verb ("she answered {adverb}").
ADVERBS = ["quickly", "slowly", "carefully", "quietly", "loudly", "politely", "calmly", "patiently",
           "happily", "briefly", "eagerly", "gently", "honestly", "nervously", "proudly"]
NUMBER_WORDS_SMALL = ["two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
                      "eleven", "twelve", "fifteen", "twenty", "thirty", "forty", "fifty"]

# Words the frequent-word slots never draw: profanity, slurs and words that read as crude out of
# context. Mild words stay; this is a training corpus for reading aloud, not a filter of topics.
BLOCKED = set("""fuck fucking fucked fucker fuckin motherfucker shit shitty bullshit bitch bitches
ass asshole dick dicks cock pussy tits boobs boob porn porno sexy nude naked cum slut whore rape
raped rapist crap bastard cunt twat wank piss pissed dildo horny hooker milf hentai jizz dumbass
nigga nigger niggas fag faggot retard retarded damn goddamn penis vagina anal sex sexual orgasm
erotic breasts nipples semen sperm butt hoe hoes""".split())

# Frequent words that are names in every use; the frequent-word slots capitalise them (wordfreq's
# list is case-folded). Names that are also common words (Bill, Mark, China, Turkey) stay lower-case.
ALWAYS_CAPITALISED = set("""i aaron adams adelaide afghanistan africa african alabama alaska alex alfred
allen america american americans anderson andrew android angela angeles anna april arab arabic
argentina arizona arsenal arthur ashley asia asian atlanta austin australia australian austria bailey
baltimore barcelona batman beijing belgium ben bennett berlin bernie betty bible bitcoin bob boston brad
brazil brazilian brian britain british brooklyn brussels bush california cambridge campbell canada
canadian carl carol carolina carter catholic charles chelsea chicago chile chinese chris christ christian
christians christmas clark cleveland clinton collins colombia colorado cooper cuba dallas dan david davis
december democrat democrats denmark dennis denver detroit diego disney douglas dubai dublin dutch dylan
easter edinburgh edwards egypt emily english eric europe european evans facebook february fifa finland
florida francisco friday gary george georgia german germany glasgow google greece greek harold harris
harry harvard hawaii helen henry hollywood honda hong houston howard hughes india indian indiana
indonesia instagram iowa iphone iran iraq ireland irish islam islamic israel israeli italian italy
jackson jacob jake jamaica james january japan japanese jason jeff jeffrey jennifer jeremy jerry jessica
jesus jewish jim joe john johnson jones jose joshua july june justin kansas karen kelly kentucky kenya
kevin kong korea korean kyle larry laura lewis liam linux lisa liverpool logan london louisiana lucas
madrid malaysia manchester manhattan mary maryland massachusetts matthew melbourne mexican mexico miami
michael michelle michigan microsoft mike miller minnesota missouri mitchell monday montreal morgan
morris moscow murphy muslim muslims nancy nathan nelson netflix netherlands nevada nigeria nintendo noah
norway november obama october ohio oklahoma oliver olympic olympics ontario oregon orleans oxford
pakistan paris parker patrick paul pennsylvania peter philadelphia philippines phillips pittsburgh
playstation poland portland portugal quebec raymond richard richardson robert roberts robinson rogers
russia russian russians ryan sam sanders sarah saturday saudi scotland scott scottish seattle september
shakespeare sharon simon singapore smith spain spanish stanford stephen steve stewart sunday superman
susan sweden swedish swiss switzerland sydney syria taiwan taylor tennessee texas thailand thomas
thompson thursday tokyo tom tony toronto toyota trump tuesday twitter tyler ukraine ukrainian utah
vancouver vegas vietnam virginia wales walker walter washington watson wednesday welsh westminster
william williams wilson wisconsin xbox york youtube zealand""".split())
