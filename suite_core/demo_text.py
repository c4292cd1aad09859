"""The financial-news vocabulary of the project's demo data: the pipeline's demo
sentiment dataset (:mod:`tfx_pipeline.demo_data`) and the sentiment monitor's demo
stream are made of the same companies and headline templates, so the tiny demo
model scores the stream sensibly."""

COMPANIES = ["Nokia", "Fortum", "Kone", "Stora Enso", "Elisa", "Wartsila", "Sampo", "Neste", "UPM", "Outokumpu"]
SENTIMENT_TEMPLATES = {
    "positive": ["{co} net sales rose {n} % in the quarter", "{co} operating profit increased to EUR {n} million",
                 "{co} wins a major contract worth EUR {n} million", "{co} raises its full-year outlook",
                 "{co} reports record orders, up {n} percent"],
    "negative": ["{co} operating loss widened to EUR {n} million", "{co} net sales fell {n} % in the quarter",
                 "{co} cuts {n} jobs as demand weakens", "{co} lowers its profit guidance",
                 "{co} shares drop {n} percent after a profit warning"],
    "neutral": ["{co} will publish its interim report on {day}", "{co} appoints a new chief financial officer",
                "{co} annual general meeting will be held in Helsinki", "{co} has {n} employees in Finland",
                "{co} headquarters are located in Espoo"],
}
DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday"]
